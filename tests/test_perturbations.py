"""Every perturbation and consistency loss against numpy: Cutout, CutMix with a colour view, ICT, VAT,
the five loss functions, per-pixel confidence, the ramp-up, the batch ratio and the Pi-model."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from semiseg_tf import models
from semiseg_tf.augment import boxmask
from semiseg_tf import catalog
from semiseg_tf.semisup import losses, mean_teacher, methods
from tests.test_losses import FixedTerms, linear_network, make_terms, softmax


def random_logits(seed, shape=(2, 5, 6, 4), scale=1.0):
    return (scale * np.random.RandomState(seed).normal(size=shape)).astype(np.float32)


def numpy_consistency_loss(name, student_logits, teacher_logits):
    ls, lt = student_logits.astype(np.float64), teacher_logits.astype(np.float64)
    ps, pt = softmax(ls), softmax(lt)
    classes = ls.shape[-1]
    if name == "var":
        per_class = (ps - pt) ** 2
    elif name == "bce":
        per_class = -(pt * np.log(ps + 1e-6) + (1 - pt) * np.log(1 - ps + 1e-6))
    elif name == "kld":
        log_ps = ls - ls.max(-1, keepdims=True)
        log_ps = log_ps - np.log(np.exp(log_ps).sum(-1, keepdims=True))
        per_class = np.where(pt > 0, pt * np.log(np.where(pt > 0, pt, 1)), 0) - pt * log_ps
    elif name == "hard_ce":
        # One-hot at the teacher's most likely class, against the student's log-probabilities.
        one_hot = np.eye(classes)[pt.argmax(-1)]
        per_class = -one_hot * np.log(ps)
    elif name == "logits_var":
        per_class = (ls - lt) ** 2 / math.sqrt(classes)
    else:
        d = np.abs(ls - lt)
        per_class = np.where(d < 1, 0.5 * d ** 2, d - 0.5) / math.sqrt(classes)
    return per_class.sum(-1, keepdims=True)


@pytest.mark.parametrize("name", ["var", "bce", "kld", "hard_ce", "logits_var", "logits_smoothl1"])
def test_consistency_loss_functions_match_numpy(name):
    student_logits = random_logits(0, scale=2.0)
    teacher_logits = random_logits(1, scale=2.0)
    teacher_logits[0, 0, 0] = [30.0, -30.0, -30.0, -30.0]   # a target probability of ~0 for KL
    teacher_probs = tf.nn.softmax(teacher_logits, axis=-1)
    got = losses.CONSISTENCY_LOSSES[name](tf.constant(student_logits), tf.constant(teacher_logits),
                                          teacher_probs).numpy()
    expected = numpy_consistency_loss(name, student_logits, teacher_logits)
    assert got.shape == (2, 5, 6, 1)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-5)


def test_per_pixel_confidence_masks_the_loss():
    terms, per_pixel, confidence, loss_mask = make_terms(3)
    model = mean_teacher.MeanTeacher(keras.Sequential(), keras.Sequential(), FixedTerms(terms),
                                     conf_thresh=0.9, conf_per_pixel=True)
    loss, share, _ = model.consistency(None)
    confident = confidence >= 0.9
    assert 0 < confident.mean() < 1
    np.testing.assert_allclose(loss.numpy(), (per_pixel * loss_mask * confident).mean(), rtol=1e-5)
    np.testing.assert_allclose(share.numpy(), confident.mean(), rtol=1e-6)


@pytest.mark.parametrize("step, length, expected", [
    (0, 10, math.exp(-5.0)), (5, 10, math.exp(-5 * 0.25)), (10, 10, 1.0), (25, 10, 1.0), (3, 0, 1.0)])
def test_sigmoid_rampup(step, length, expected):
    assert losses.sigmoid_rampup(step, length).numpy() == pytest.approx(expected, rel=1e-6)


def linear_pair(seed=2, channels=3, classes=4):
    rng = np.random.RandomState(seed)
    w_student, w_teacher = rng.normal(size=(2, channels, classes)).astype(np.float32)
    bias = rng.normal(size=classes).astype(np.float32)
    return (linear_network(w_student, bias), linear_network(w_teacher, bias),
            w_student, w_teacher, bias)


@pytest.mark.parametrize("invert", [True, False])
def test_cutout_keeps_the_box_and_counts_the_loss_inside_it(invert):
    student, teacher, w_student, w_teacher, bias = linear_pair()
    rng = np.random.RandomState(4)
    image = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    valid = np.ones((2, 8, 8, 1), np.float32)
    valid[:, -2:] = 0
    params = boxmask.BoxMaskParams(prop_range=(0.3, 0.3), invert=invert)
    cutout = methods.mixing.Cutout(params)
    mask = np.stack([cutout.sample_extras(tf.constant([i, 1], tf.int64), (8, 8))["mix_mask"].numpy()
                     for i in range(2)])
    y0, x0, y1, x1 = [int(v) for v in boxmask.box_corners(tf.constant([0, 1], tf.int64), 8, 8,
                                                          params)[0].numpy()]
    box = np.zeros((8, 8), bool)
    box[y0:y1, x0:x1] = True
    # The mask is 1 inside the box by default (the box is kept) and 0 inside it with no_invert.
    np.testing.assert_array_equal(mask[0, ..., 0], box if invert else ~box)
    terms = cutout.terms(student, teacher, ({"image": image, "valid": valid,
                                                   "mix_mask": mask},))
    np.testing.assert_allclose(terms.student_logits.numpy(), (image * mask) @ w_student + bias,
                               atol=1e-5)
    np.testing.assert_allclose(terms.teacher_logits.numpy(), image @ w_teacher + bias, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(terms.loss_mask), valid * mask)


def test_cutmix_mixes_the_students_colour_view_and_the_teachers_plain_view():
    student, teacher, w_student, w_teacher, bias = linear_pair()
    rng = np.random.RandomState(5)
    images, jittered = rng.normal(size=(2, 2, 2, 8, 8, 3)).astype(np.float32)
    mix = np.stack([boxmask.box_mask(tf.constant([i, 0], tf.int64), 8, 8, boxmask.BoxMaskParams())
                    .numpy() for i in range(2)])
    valid = np.ones((2, 8, 8, 1), np.float32)
    batch_a = {"image": images[0], "student_image": jittered[0], "valid": valid, "mix_mask": mix}
    batch_b = {"image": images[1], "student_image": jittered[1], "valid": valid}
    terms = methods.mixing.CutMix().terms(student, teacher, (batch_a, batch_b))
    mixed_student = jittered[0] * (1 - mix) + jittered[1] * mix
    mixed_target = (images[0] @ w_teacher + bias) * (1 - mix) + (images[1] @ w_teacher + bias) * mix
    np.testing.assert_allclose(terms.student_logits.numpy(), mixed_student @ w_student + bias,
                               atol=1e-5)
    np.testing.assert_allclose(terms.teacher_logits.numpy(), mixed_target, atol=1e-5)


def test_ict_mixes_images_targets_confidences_and_masks_like_numpy():
    student, teacher, w_student, w_teacher, bias = linear_pair()
    rng = np.random.RandomState(6)
    image_a, image_b = rng.normal(size=(2, 3, 6, 6, 3)).astype(np.float32)
    valid_a = np.ones((3, 6, 6, 1), np.float32)
    valid_b = np.ones((3, 6, 6, 1), np.float32)
    valid_b[:, :3] = 0
    ict = methods.mixing.ICT(alpha=0.5)
    lam = np.stack([ict.sample_extras(tf.constant([i, 2], tf.int64), (6, 6))["ict_lambda"].numpy()
                    for i in range(3)])
    assert lam.shape == (3, 1, 1, 1) and np.all((lam >= 0) & (lam <= 1))
    terms = ict.terms(student, teacher, ({"image": image_a, "valid": valid_a,
                                                "ict_lambda": lam},
                                               {"image": image_b, "valid": valid_b}))
    logits_a, logits_b = image_a @ w_teacher + bias, image_b @ w_teacher + bias
    probs_a, probs_b = softmax(logits_a.astype(np.float64)), softmax(logits_b.astype(np.float64))
    mixed = (1 - lam) * image_a + lam * image_b
    np.testing.assert_allclose(terms.student_logits.numpy(), mixed @ w_student + bias, atol=1e-5)
    np.testing.assert_allclose(terms.teacher_probs.numpy(), (1 - lam) * probs_a + lam * probs_b,
                               atol=1e-6)
    np.testing.assert_allclose(terms.teacher_logits.numpy(), (1 - lam) * logits_a + lam * logits_b,
                               atol=1e-5)
    # The confidence is the mix of the two confidences, not the confidence of the mixed target.
    np.testing.assert_allclose(
        terms.teacher_confidence.numpy(),
        (1 - lam) * probs_a.max(-1, keepdims=True) + lam * probs_b.max(-1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(np.asarray(terms.loss_mask), (1 - lam) * valid_a + lam * valid_b,
                               atol=1e-6)


def test_ict_factor_follows_the_beta_distribution():
    alpha = 0.1
    ict = methods.mixing.ICT(alpha=alpha)
    draws = np.array([ict.sample_extras(tf.constant([i, 7], tf.int64), (1, 1))["ict_lambda"]
                      .numpy().item() for i in range(4000)])
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)); with a = 0.1 most mass is near 0 and 1.
    assert abs(draws.mean() - 0.5) < 0.03
    assert abs(draws.var() - 1 / (4 * (2 * alpha + 1))) < 0.015
    assert ((draws < 0.1) | (draws > 0.9)).mean() > 0.6


def small_conv_network(seed=0, classes=4):
    keras.utils.set_random_seed(seed)
    net = keras.Sequential([keras.Input((None, None, 3)),
                            keras.layers.Conv2D(8, 3, padding="same", activation="tanh"),
                            keras.layers.Conv2D(classes, 3, padding="same")])
    return net


def kl_divergence_batch(network, clean, perturbed):
    pt = tf.nn.softmax(network(clean), axis=-1)
    ls = network(perturbed)
    return tf.reduce_sum(losses.kl_divergence(ls, None, pt), axis=[1, 2, 3]).numpy()


def test_vat_direction_raises_the_divergence_more_than_random_directions():
    network = small_conv_network()
    images = np.random.RandomState(8).normal(size=(2, 10, 10, 3)).astype(np.float32)
    vat = methods.vat.VAT(loss_fn="kld")
    noise = tf.random.stateless_normal(images.shape, [1, 2])
    direction = vat.direction(network, images, noise).numpy()
    np.testing.assert_allclose(np.sqrt((direction ** 2).sum(axis=(1, 2, 3))), 1.0, rtol=1e-5)
    step = 0.5
    adversarial = kl_divergence_batch(network, images, images + step * direction)
    random_dirs = np.random.RandomState(9).normal(size=(20,) + images.shape).astype(np.float32)
    random_dirs /= np.sqrt((random_dirs ** 2).sum(axis=(2, 3, 4), keepdims=True))
    random = np.stack([kl_divergence_batch(network, images, images + step * d) for d in random_dirs])
    assert np.all(adversarial > random.max(axis=0)), (adversarial, random.max(axis=0))
    assert np.all(adversarial > 1.5 * random.mean(axis=0))


def hessian_probe_oracle(weights, bias, images, probe):
    """For a 1x1-convolution network the KL Hessian at d = 0 is known per pixel:
    W (diag p - p p^T) W^T; returns that times the probe, normalised per sample, in float64."""
    w = weights.astype(np.float64)
    p = softmax(images.astype(np.float64) @ w + bias)                     # [n, h, w, classes]
    fisher = np.einsum("nhwc,cd->nhwcd", p, np.eye(w.shape[1])) - np.einsum("nhwc,nhwd->nhwcd", p, p)
    probe = probe / np.sqrt((probe.astype(np.float64) ** 2).sum(axis=(1, 2, 3), keepdims=True))
    product = np.einsum("ic,nhwcd,jd,nhwj->nhwi", w, fisher, w, probe)
    return product / np.sqrt((product ** 2).sum(axis=(1, 2, 3), keepdims=True))


def test_vat_direction_is_the_hessian_times_the_probe_to_float32_precision():
    """The power iteration's gradient at a small probe is the Hessian times the probe: the found
    direction must agree with the float64 Hessian-probe product. With the authors' probe size it
    would be rounding noise."""
    rng = np.random.RandomState(10)
    weights = rng.normal(size=(3, 4)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    images = rng.normal(size=(2, 6, 7, 3)).astype(np.float32)
    noise = rng.normal(size=images.shape).astype(np.float32)
    direction = methods.vat.VAT(loss_fn="kld").direction(linear_network(weights, bias), images,
                                                           noise).numpy()
    cosine = (direction * hessian_probe_oracle(weights, bias, images, noise)).sum(axis=(1, 2, 3))
    assert np.all(cosine > 0.999), cosine


def test_vat_probe_norms_ours_and_the_authors():
    images = tf.zeros((2, 321, 321, 3))
    ours = methods.vat.VAT(probe_scale=1e-2).probe_norm(images).numpy().ravel()
    np.testing.assert_allclose(ours, 1e-2 * math.sqrt(3 * 321 * 321), rtol=1e-6)
    authors = methods.vat.VAT(authors_probe=True).probe_norm(images).numpy()
    assert authors == pytest.approx(1.03041e-4, rel=1e-5)            # 1e-6 * 321 * 321 / 1000


def test_vat_direction_works_through_bilinear_upsampling():
    """Segmentation networks end in a bilinear resize, whose gradient TF cannot differentiate again;
    the direction needs first derivatives only."""
    keras.utils.set_random_seed(7)
    network = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3, padding="same"),
                                keras.layers.MaxPooling2D(2),
                                keras.layers.UpSampling2D(2, interpolation="bilinear")])
    images = np.random.RandomState(17).normal(size=(2, 8, 8, 3)).astype(np.float32)
    direction = methods.vat.VAT().direction(network, images, tf.random.normal(images.shape))
    np.testing.assert_allclose(np.sqrt((direction.numpy() ** 2).sum(axis=(1, 2, 3))), 1.0, rtol=1e-5)


def test_adaptive_vat_radius_on_a_hand_made_image():
    # A ramp down the rows: every central difference along y is 2 (one channel), along x 0.
    height, width = 6, 5
    image = np.zeros((1, height, width, 3), np.float32)
    image[0, :, :, 1] = np.arange(height)[:, None]
    # (height - 2) * width differences of 2 along y: sum of squares 4 * 4 * 5 = 80.
    expected = 0.5 * math.sqrt(4 * (height - 2) * width)
    assert methods.vat.adaptive_radius(tf.constant(image)).numpy().item() == pytest.approx(expected)


def test_unsup_batch_ratio_sums_the_losses_of_the_slices():
    model = mean_teacher.MeanTeacher(small_conv_network(5), small_conv_network(6),
                                     methods.mixing.CutMix(), cons_weight=1.0, conf_thresh=0.0,
                                     unsup_batch_ratio=2)
    model.compile(optimizer=keras.optimizers.SGD(0.0))     # weights stay put: recompute after
    model.initialise((8, 8, 3))
    rng = np.random.RandomState(16)
    mix = np.stack([boxmask.box_mask(tf.constant([i, 0], tf.int64), 8, 8, boxmask.BoxMaskParams())
                    .numpy() for i in range(4)])
    unlabelled = tuple({"image": rng.normal(size=(4, 8, 8, 3)).astype(np.float32),
                        "valid": np.ones((4, 8, 8, 1), np.float32), "mix_mask": mix}
                       for _ in range(2))
    data = {"labelled": {"image": rng.normal(size=(2, 8, 8, 3)).astype(np.float32),
                         "label": rng.randint(0, 4, (2, 8, 8)).astype(np.int32)},
            "unlabelled": unlabelled}
    logs = model.train_step(data)
    slices = model._unlabelled_slices(unlabelled)
    assert [s[0]["image"].shape[0] for s in slices] == [2, 2]
    np.testing.assert_array_equal(slices[1][1]["image"], unlabelled[1]["image"][2:])
    per_slice = [float(model.consistency(s)[0]) for s in slices]
    assert per_slice[0] != pytest.approx(per_slice[1])
    assert float(logs["cons_loss"]) == pytest.approx(sum(per_slice), rel=1e-5)


def test_pi_model_has_no_ema_and_evaluates_the_student():
    student = small_conv_network(seed=2)
    model = mean_teacher.MeanTeacher(student, student, methods.mixing.CutMix(), cons_weight=1.0,
                                     conf_thresh=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.initialise((8, 8, 3))
    assert model.is_pi_model and model.teacher is model.student
    rng = np.random.RandomState(12)
    mix = np.stack([boxmask.box_mask(tf.constant([i, 0], tf.int64), 8, 8, boxmask.BoxMaskParams())
                    .numpy() for i in range(2)])
    data = {"labelled": {"image": rng.normal(size=(2, 8, 8, 3)).astype(np.float32),
                         "label": rng.randint(0, 4, (2, 8, 8)).astype(np.int32)},
            "unlabelled": ({"image": rng.normal(size=(2, 8, 8, 3)).astype(np.float32),
                            "valid": np.ones((2, 8, 8, 1), np.float32), "mix_mask": mix},
                           {"image": rng.normal(size=(2, 8, 8, 3)).astype(np.float32),
                            "valid": np.ones((2, 8, 8, 1), np.float32)})}
    before = [w.numpy() for w in student.weights]
    logs = model.train_step(data)
    assert float(logs["cons_loss"]) > 0
    after = [w.numpy() for w in student.weights]
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before))
    images = data["labelled"]["image"]
    np.testing.assert_array_equal(model(images).numpy(), student(images).numpy())


def test_augment_consistency_warps_teacher_probabilities_into_the_student_frame():
    import cv2
    from semiseg_tf.augment import geometric
    from semiseg_tf.data import pipeline

    student, teacher, w_student, w_teacher, bias = linear_pair()
    rng = np.random.RandomState(13)
    image = tf.constant(rng.normal(size=(20, 20, 3)).astype(np.float32))
    params = geometric.GeometricParams(crop_size=(12, 12), scale_hung=True, hflip=True,
                                       crop_offset=4.0)
    pairs = [pipeline.augment_pair(image, tf.constant([i, 5], tf.int64), params) for i in range(3)]
    batch = {k: tf.stack([p[k] for p in pairs]) for k in pairs[0]}
    terms = methods.augmentation.StandardAugmentation().terms(student, teacher, (batch,))

    np.testing.assert_allclose(terms.student_logits.numpy(),
                               batch["student_image"].numpy() @ w_student + bias, atol=1e-5)
    for i in range(3):
        affine = batch["teacher_to_student"][i].numpy()[:2]
        probs = softmax((batch["image"][i].numpy() @ w_teacher + bias).astype(np.float64))
        # Softmax first, then the warp, bilinear with zero outside, like cv2.warpAffine.
        expected = cv2.warpAffine(probs.astype(np.float32), affine, (12, 12), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        np.testing.assert_allclose(terms.teacher_probs[i].numpy(), expected, atol=1e-4)
        np.testing.assert_allclose(terms.teacher_confidence[i].numpy()[..., 0], expected.max(-1),
                                   atol=1e-4)
        warped_valid = cv2.warpAffine(batch["valid"][i].numpy(), affine, (12, 12),
                                      flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                      borderValue=0)
        np.testing.assert_allclose(terms.loss_mask[i].numpy()[..., 0],
                                   warped_valid * batch["student_valid"][i].numpy()[..., 0],
                                   atol=1e-4)
    assert 0 < terms.loss_mask.numpy().mean() < 1


@pytest.mark.parametrize("dir_from_student", [False, True])
def test_vat_updates_batch_norm_statistics_once(dir_from_student):
    """The probe passes run in inference mode: after one consistency computation the student's moving
    statistics are those of exactly one training-mode pass, on the adversarial input."""
    def network():
        keras.utils.set_random_seed(3)
        return keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3, padding="same"),
                                 keras.layers.BatchNormalization(momentum=0.5),
                                 keras.layers.Conv2D(3, 1)])
    student, teacher, reference = network(), network(), network()
    images = np.random.RandomState(14).normal(size=(2, 8, 8, 3)).astype(np.float32)
    batch = {"image": images, "valid": np.ones((2, 8, 8, 1), np.float32),
             "vat_noise": np.random.RandomState(15).normal(size=(2, 8, 8, 3)).astype(np.float32)}
    vat = methods.vat.VAT(adaptive_radius=True, dir_from_student=dir_from_student)
    terms = vat.terms(student, teacher, (batch,))
    reference(terms.panels["adversarial_input"], training=True)
    bn, bn_reference = student.layers[1], reference.layers[1]
    np.testing.assert_allclose(bn.moving_mean.numpy(), bn_reference.moving_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), bn_reference.moving_variance.numpy(),
                               atol=1e-6)
    assert np.abs(bn.moving_mean.numpy()).max() > 1e-3   # it did move, once


@pytest.mark.parametrize("authors_eval_mode", [False, True])
def test_vat_authors_eval_mode_gives_inference_mode_targets(authors_eval_mode):
    """The authors' bug, on request: the direction network (the teacher) stays in inference mode, so
    its targets use the moving statistics instead of the batch's."""
    def network():
        keras.utils.set_random_seed(3)
        return keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3, padding="same"),
                                 keras.layers.BatchNormalization(), keras.layers.Conv2D(3, 1)])
    student, teacher = network(), network()
    images = np.random.RandomState(18).normal(2.0, 3.0, size=(2, 8, 8, 3)).astype(np.float32)
    batch = {"image": images, "valid": np.ones((2, 8, 8, 1), np.float32),
             "vat_noise": np.random.RandomState(19).normal(size=(2, 8, 8, 3)).astype(np.float32)}
    inference = teacher(images, training=False).numpy()
    terms = methods.vat.VAT(authors_eval_mode=authors_eval_mode).terms(student, teacher,
                                                                               (batch,))
    matches_inference = np.allclose(terms.teacher_logits.numpy(), inference, atol=1e-5)
    assert matches_inference == authors_eval_mode


@pytest.mark.parametrize("name", sorted(set(catalog.method_names()) - {"unimatch", "unimatch_v2"}))
def test_every_perturbation_gives_a_list_of_weighted_terms(name):
    """One return type: a list of WeightedTerms; a one-loss perturbation's is its terms at weight 1."""
    keras.utils.set_random_seed(0)
    network = models.build("tiny_unet", 3)
    perturbation = methods.base.build(name)
    rng = np.random.default_rng(0)
    streams = []
    for k in range(max(perturbation.num_unlabelled_streams, 1)):
        sample = {"image": tf.constant(rng.normal(size=(2, 8, 8, 3)), tf.float32),
                  "valid": tf.ones([2, 8, 8, 1])}
        if k == 0:
            extras = [perturbation.sample_extras(tf.constant([i, 0], tf.int64), (8, 8))
                      for i in range(2)]
            sample.update({key: tf.stack([e[key] for e in extras]) for key in extras[0]})
        if perturbation.paired_views:
            sample.update(student_image=sample["image"], student_valid=sample["valid"],
                          teacher_to_student=tf.eye(3, batch_shape=[2]))
        streams.append(sample)
    result = perturbation.consistency(network, network, tuple(streams))
    assert isinstance(result, list) and len(result) == 1
    assert isinstance(result[0], methods.base.WeightedTerms) and result[0].weight == 1.0
    assert result[0].terms.student_logits.shape == (2, 8, 8, 3)
