"""Perturbations for consistency regularisation: each is one small object the trainer calls.

A perturbation says how many unlabelled streams it reads and what each sample must carry (drawn inside
tf.data, e.g. a box mask), and turns an unlabelled batch into `ConsistencyTerms`: the student's logits on
the perturbed input and the teacher's target in the same frame. The trainer does the rest (loss function,
confidence weighting, weight), so a new perturbation touches only this module and its test.
"""
import dataclasses

import tensorflow as tf

from semiseg_tf.augment import boxmask

_REGISTRY = {}


def register(name):
    def wrap(cls):
        _REGISTRY[name] = cls
        return cls
    return wrap


def available():
    return sorted(_REGISTRY)


def build(name, **kwargs):
    if name not in _REGISTRY:
        raise ValueError(f"unknown perturbation {name!r}; choose one of {', '.join(available())}")
    return _REGISTRY[name](**kwargs)


@dataclasses.dataclass
class ConsistencyTerms:
    """What the consistency loss needs, all in the student's frame.

    Attributes:
      student_logits: [N, H, W, C], with gradient.
      teacher_logits: [N, H, W, C], no gradient (used by logit-space losses).
      teacher_probs: [N, H, W, C], no gradient: the target.
      teacher_confidence: [N, H, W, 1], max class probability of the target, for confidence weighting.
      loss_mask: [N, H, W, 1], where the loss counts (valid pixels, mask regions).
      panels: images for TensorBoard, name -> [N, H, W, 1 or 3].
    """
    student_logits: tf.Tensor
    teacher_logits: tf.Tensor
    teacher_probs: tf.Tensor
    teacher_confidence: tf.Tensor
    loss_mask: tf.Tensor
    panels: dict


class Perturbation:
    """Base class. `num_unlabelled_streams` batches arrive as a tuple of dicts with 'image', 'valid'."""
    num_unlabelled_streams = 0

    def sample_extras(self, seed, crop_size):
        """Per-sample tensors drawn in tf.data for the first unlabelled stream (a dict)."""
        return {}

    def consistency(self, student, teacher, unlabelled, training=True):
        """Returns `ConsistencyTerms`. `training=False` only for pictures: it leaves BN statistics alone."""
        raise NotImplementedError


def _teacher_logits(teacher, images, training):
    # The authors run the teacher in training mode (batch-statistics BN), without gradient.
    return tf.stop_gradient(tf.cast(teacher(images, training=training), tf.float32))


@register("cutmix")
class CutMix(Perturbation):
    """Mixes two unlabelled batches with box masks; the target is the teacher's logits mixed alike.

    SPEC 2.4: teacher logits on each batch separately, then `la * (1 - M) + lb * M`; student on
    `xa * (1 - M) + xb * M`; loss counts where the mixed valid mask is 1.
    """
    num_unlabelled_streams = 2

    def __init__(self, mask_params=boxmask.BoxMaskParams()):
        self.mask_params = mask_params

    def sample_extras(self, seed, crop_size):
        return {"mix_mask": boxmask.box_mask(seed, crop_size[0], crop_size[1], self.mask_params)}

    def consistency(self, student, teacher, unlabelled, training=True):
        batch_a, batch_b = unlabelled
        mix = batch_a["mix_mask"]
        logits_a = _teacher_logits(teacher, batch_a["image"], training)
        logits_b = _teacher_logits(teacher, batch_b["image"], training)
        mixed_image = batch_a["image"] * (1 - mix) + batch_b["image"] * mix
        student_logits = student(mixed_image, training=training)
        teacher_logits = logits_a * (1 - mix) + logits_b * mix
        teacher_probs = tf.nn.softmax(teacher_logits, axis=-1)
        return ConsistencyTerms(
            student_logits=student_logits,
            teacher_logits=teacher_logits,
            teacher_probs=teacher_probs,
            teacher_confidence=tf.reduce_max(teacher_probs, axis=-1, keepdims=True),
            loss_mask=batch_a["valid"] * (1 - mix) + batch_b["valid"] * mix,
            panels={"image_a": batch_a["image"], "image_b": batch_b["image"], "mix_mask": mix,
                    "mixed_input": mixed_image})
