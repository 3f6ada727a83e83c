"""What every consistency method is: a `Perturbation` that turns unlabelled batches into the terms
of its loss, and the helpers the methods share.

A method says how many unlabelled streams it reads and what each sample must carry (drawn inside
tf.data, e.g. a box mask), and turns an unlabelled batch into `ConsistencyTerms`: the student's
logits on the perturbed input and the teacher's target in the same frame. The trainer does the
rest (loss function, confidence weighting, weight). A method builds itself from a run's Config
(`from_config`), reading only the sections its catalog entry names (semiseg_tf/catalog.py).
"""
import dataclasses

import tensorflow as tf

from semiseg_tf import catalog
from semiseg_tf.data import pipeline


def build(name, **kwargs):
    """The method catalogued as `name` (e.g. "cutmix"), made with `kwargs`."""
    return catalog.load(catalog.method(name).builder)(**kwargs)


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


@dataclasses.dataclass
class WeightedTerms:
    """One consistency loss of a perturbation: its weight, a name for pictures ("" for the only
    one), and its terms."""
    weight: float
    name: str
    terms: ConsistencyTerms


class Perturbation:
    """The base class of every consistency method.

    `num_unlabelled_streams` batches arrive as a tuple of dicts with 'image' (the teacher's view),
    'valid' and, with colour augmentation, 'student_image' (the same crop, colour-jittered).
    """
    num_unlabelled_streams = 0
    # True: each unlabelled sample is two geometric views of one image (`pipeline.augment_pair`).
    paired_views = False
    # Independently colour-jittered and blurred student copies per unlabelled sample
    # (`student_image`, `student_image_2`, ...; see `pipeline.student_view_key`).
    strong_views = 1

    @classmethod
    def from_config(cls, cfg):
        """The method with a run's options (`cfg`: a semiseg_tf.config.Config); one without
        options is made with none."""
        return cls()

    def sample_extras(self, seed, crop_size):
        """Per-sample tensors drawn in tf.data for the first unlabelled stream (a dict)."""
        return {}

    def consistency(self, student, teacher, unlabelled, training=True):
        """The consistency losses of one unlabelled batch: a list of `WeightedTerms`, of which the
        trainer sums weight x loss. A perturbation with one loss implements `terms` instead.
        `training=False` only for pictures: it leaves BN statistics alone."""
        return [WeightedTerms(1.0, "", self.terms(student, teacher, unlabelled, training))]

    def terms(self, student, teacher, unlabelled, training=True):
        """The `ConsistencyTerms` of a perturbation with one loss."""
        raise NotImplementedError


def student_view(batch, view=0):
    """The student's input: its `view`-th colour-augmented (strong) copy if there is one, else the
    teacher's image."""
    return batch.get(pipeline.student_view_key(view), batch["image"])


def teacher_logits(teacher, images, training):
    """The teacher's logits without gradient. The authors run it in training mode (batch-statistics
    batch norm); `training=False` serves the pictures and VAT's `authors_eval_mode`."""
    return tf.stop_gradient(tf.cast(teacher(images, training=training), tf.float32))


def terms_from_logits(student_logits, target_logits, loss_mask, panels):
    """`ConsistencyTerms` whose target is the softmax of `target_logits`."""
    probs = tf.nn.softmax(target_logits, axis=-1)
    return ConsistencyTerms(
        student_logits=student_logits, teacher_logits=target_logits, teacher_probs=probs,
        teacher_confidence=tf.reduce_max(probs, axis=-1, keepdims=True), loss_mask=loss_mask,
        panels=panels)


def box_pasted_terms(student, batch_a, batch_b, logits_a, logits_b, box, training, panels):
    """The terms of the student on `batch_a`'s student view with `batch_b`'s pasted in where `box`
    is 1, against the two targets' logits and the two valid masks mixed by the same box (CutMix,
    FixMatch). `panels(mixed_image)`: the pictures."""
    mixed_image = student_view(batch_a) * (1 - box) + student_view(batch_b) * box
    return terms_from_logits(
        student(mixed_image, training=training), logits_a * (1 - box) + logits_b * box,
        batch_a["valid"] * (1 - box) + batch_b["valid"] * box, panels=panels(mixed_image))
