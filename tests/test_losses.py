"""Supervised and consistency losses, confidence weighting and CutMix terms against numpy."""
import keras
import numpy as np
import tensorflow as tf

from semiseg_tf.augment import boxmask
from semiseg_tf.semisup import losses, mean_teacher, methods


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_cross_entropy_ignores_255():
    rng = np.random.RandomState(0)
    logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    labels = rng.randint(0, 5, size=(2, 3, 4)).astype(np.int32)
    labels[0, 0, :] = 255
    labels[1, 2, 1] = 255
    valid = labels != 255
    log_probs = np.log(softmax(logits.astype(np.float64)))
    picked = np.take_along_axis(log_probs, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    expected = -picked[valid].mean()
    np.testing.assert_allclose(losses.cross_entropy(logits, labels).numpy(), expected, rtol=1e-5)


def test_all_ignored_gives_zero_not_nan():
    loss = losses.cross_entropy(tf.zeros((1, 2, 2, 3)), tf.fill((1, 2, 2), 255))
    assert loss.numpy() == 0.0


class FixedTerms(methods.base.Perturbation):
    """A stand-in perturbation that returns given terms, to test the trainer's weighting."""

    def __init__(self, terms):
        self.fixed = terms

    def terms(self, student, teacher, unlabelled, training=True):
        return self.fixed


def make_terms(seed):
    """Random consistency terms, and in numpy: the 'var' loss per pixel, the confidence, the mask."""
    rng = np.random.RandomState(seed)
    student_logits = rng.normal(size=(2, 5, 6, 4)).astype(np.float32)
    teacher_logits = 4 * rng.normal(size=(2, 5, 6, 4)).astype(np.float32)
    teacher_probs = softmax(teacher_logits.astype(np.float64))
    loss_mask = (rng.uniform(size=(2, 5, 6, 1)) > 0.3).astype(np.float32)
    terms = methods.base.ConsistencyTerms(
        student_logits=tf.constant(student_logits), teacher_logits=tf.constant(teacher_logits),
        teacher_probs=tf.constant(teacher_probs, tf.float32),
        teacher_confidence=tf.constant(teacher_probs.max(-1, keepdims=True), tf.float32),
        loss_mask=tf.constant(loss_mask), panels={})
    per_pixel = ((softmax(student_logits.astype(np.float64)) - teacher_probs) ** 2).sum(-1)
    return terms, per_pixel, teacher_probs.max(-1), loss_mask[..., 0]


def test_consistency_loss_and_confidence_share_match_numpy():
    terms, per_pixel, confidence, loss_mask = make_terms(1)
    threshold = 0.9
    model = mean_teacher.MeanTeacher(keras.Sequential(), keras.Sequential(), FixedTerms(terms),
                                     conf_thresh=threshold)
    loss, share, _ = model.consistency(None)

    expected_share = (confidence >= threshold).mean()  # over all pixels, masked or not
    expected = (per_pixel * loss_mask).mean() * expected_share  # mean over every pixel
    assert 0 < expected_share < 1
    np.testing.assert_allclose(share.numpy(), expected_share, rtol=1e-6)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)

    unweighted = mean_teacher.MeanTeacher(keras.Sequential(), keras.Sequential(), FixedTerms(terms),
                                          conf_thresh=0.0)
    loss, share, _ = unweighted.consistency(None)
    np.testing.assert_allclose(loss.numpy(), (per_pixel * loss_mask).mean(), rtol=1e-5)
    assert share.numpy() == 1.0


def linear_network(weights, bias):
    """A 1x1 convolution with known weights: logits = image @ weights + bias."""
    net = keras.Sequential([keras.Input((None, None, weights.shape[0])),
                            keras.layers.Conv2D(weights.shape[1], 1)])
    net.layers[0].set_weights([weights[None, None], bias])
    return net


def test_cutmix_terms_match_numpy():
    rng = np.random.RandomState(2)
    w_student, w_teacher = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    b = rng.normal(size=4)
    student = linear_network(w_student.astype(np.float32), b.astype(np.float32))
    teacher = linear_network(w_teacher.astype(np.float32), b.astype(np.float32))
    image_a, image_b = rng.normal(size=(2, 2, 8, 8, 3)).astype(np.float32)
    valid_a = np.ones((2, 8, 8, 1), np.float32)
    valid_b = np.ones((2, 8, 8, 1), np.float32)
    valid_b[:, :, :2] = 0  # stream B has padding on its left columns
    mix = np.stack([boxmask.box_mask(tf.constant([i, 0], tf.int64), 8, 8, boxmask.BoxMaskParams())
                    .numpy() for i in range(2)])
    batch_a = {"image": image_a, "valid": valid_a, "mix_mask": mix}
    batch_b = {"image": image_b, "valid": valid_b}
    terms = methods.mixing.CutMix().terms(student, teacher, (batch_a, batch_b))

    mixed = image_a * (1 - mix) + image_b * mix
    target_logits = (image_a @ w_teacher + b) * (1 - mix) + (image_b @ w_teacher + b) * mix
    np.testing.assert_allclose(terms.student_logits.numpy(), mixed @ w_student + b, atol=1e-5)
    np.testing.assert_allclose(terms.teacher_logits.numpy(), target_logits, atol=1e-5)
    np.testing.assert_allclose(terms.teacher_probs.numpy(), softmax(target_logits), atol=1e-6)
    np.testing.assert_allclose(np.asarray(terms.loss_mask), valid_a * (1 - mix) + valid_b * mix)
    assert 0 < mix.mean() < 1
