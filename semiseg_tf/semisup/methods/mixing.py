"""Consistency by mixing or masking images: CutMix (the paper's method), Cutout and ICT."""
import tensorflow as tf

from semiseg_tf.augment import boxmask
from semiseg_tf.semisup.methods.base import (ConsistencyTerms, Perturbation, box_pasted_terms,
                                             student_view, teacher_logits, terms_from_logits)


class BoxMasked(Perturbation):
    """A method whose first unlabelled stream carries a box mask (`mix_mask`) drawn with
    `mask_params` (--mask_prop_range and the --boxmask_* flags); `DEFAULT_MASK` without them."""
    DEFAULT_MASK = boxmask.BoxMaskParams()

    def __init__(self, mask_params=None):
        self.mask_params = mask_params or self.DEFAULT_MASK

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.boxmask.mask_params())

    def sample_extras(self, seed, crop_size):
        return {"mix_mask": boxmask.box_mask(seed, crop_size[0], crop_size[1], self.mask_params)}


class CutMix(BoxMasked):
    """Mixes two unlabelled batches with box masks; the target is the teacher's logits mixed alike.

    The authors' mix mode: teacher logits on each batch separately, then `la * (1 - M) + lb * M`; student
    on `xa * (1 - M) + xb * M`; the loss counts where the mixed valid mask is 1. Mixing logits or
    probabilities is the same here, as M is 0 or 1.
    """
    num_unlabelled_streams = 2

    def terms(self, student, teacher, unlabelled, training=True):
        batch_a, batch_b = unlabelled
        mix = batch_a["mix_mask"]
        logits_a = teacher_logits(teacher, batch_a["image"], training)
        logits_b = teacher_logits(teacher, batch_b["image"], training)
        return box_pasted_terms(
            student, batch_a, batch_b, logits_a, logits_b, mix, training,
            panels=lambda mixed: {"image_a": batch_a["image"], "image_b": batch_b["image"],
                                  "mix_mask": mix, "mixed_input": mixed})


class Cutout(BoxMasked):
    """Erases part of the student's input (the authors' zero mode): student on `x * M`, teacher on `x`.

    With the default (inverted) mask, M is 1 inside the box: the box is kept, everything outside it
    becomes 0, which after normalisation is the dataset's mean colour, and the loss counts only inside
    the box. `--boxmask_no_invert` makes M 0 inside the box, which erases the box instead.
    """
    num_unlabelled_streams = 1
    DEFAULT_MASK = boxmask.BoxMaskParams(prop_range=(0.0, 1.0))

    def terms(self, student, teacher, unlabelled, training=True):
        (batch,) = unlabelled
        mask = batch["mix_mask"]
        cut_image = student_view(batch) * mask
        return terms_from_logits(
            student(cut_image, training=training), teacher_logits(teacher, batch["image"], training),
            batch["valid"] * mask,
            panels={"image": batch["image"], "mask": mask, "cut_input": cut_image})


def stateless_beta(seed, alpha, shape=()):
    """Beta(alpha, alpha) from two stateless gamma draws: g1 / (g1 + g2)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    g1 = tf.random.stateless_gamma(shape, seeds[0], alpha)
    g2 = tf.random.stateless_gamma(shape, seeds[1], alpha)
    # Tiny alphas can underflow both gammas to 0; the Beta is then a fair coin between 0 and 1.
    total = g1 + g2
    return tf.where(total > 0, g1 / tf.maximum(total, 1e-30),
                    tf.cast(tf.random.stateless_uniform(shape, seeds[0]) < 0.5, tf.float32))


class ICT(Perturbation):
    """Interpolation consistency: one Beta(alpha, alpha) factor per sample mixes two batches.

    Student on `(1 - lam) xa + lam xb`; target probabilities `(1 - lam) pa + lam pb` (logit losses use
    the mixed logits); the confidence is the mixed confidences `(1 - lam) max pa + lam max pb`, not the
    confidence of the mixed target; the loss mask is the mixed valid masks.
    """
    num_unlabelled_streams = 2

    def __init__(self, alpha=0.1):
        self.alpha = float(alpha)

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.ict.alpha)

    def sample_extras(self, seed, crop_size):
        return {"ict_lambda": tf.reshape(stateless_beta(seed, self.alpha), [1, 1, 1])}

    def terms(self, student, teacher, unlabelled, training=True):
        batch_a, batch_b = unlabelled
        lam = batch_a["ict_lambda"]
        logits_a = teacher_logits(teacher, batch_a["image"], training)
        logits_b = teacher_logits(teacher, batch_b["image"], training)
        probs_a = tf.nn.softmax(logits_a, axis=-1)
        probs_b = tf.nn.softmax(logits_b, axis=-1)
        mixed_image = (1 - lam) * student_view(batch_a) + lam * student_view(batch_b)
        confidence = ((1 - lam) * tf.reduce_max(probs_a, axis=-1, keepdims=True)
                      + lam * tf.reduce_max(probs_b, axis=-1, keepdims=True))
        lam_map = tf.broadcast_to(lam, tf.shape(batch_a["valid"]))
        return ConsistencyTerms(
            student_logits=student(mixed_image, training=training),
            teacher_logits=(1 - lam) * logits_a + lam * logits_b,
            teacher_probs=(1 - lam) * probs_a + lam * probs_b,
            teacher_confidence=confidence,
            loss_mask=(1 - lam) * batch_a["valid"] + lam * batch_b["valid"],
            panels={"image_a": batch_a["image"], "image_b": batch_b["image"], "lambda": lam_map,
                    "mixed_input": mixed_image})


