"""FixMatch and UniMatch (`--perturbation=fixmatch|unimatch`) against numpy: the pasted strong view,
the pseudo-labels mixed by the same box, the confident-pixel loss and its three averages, the mix
source in inference mode, the EMA teacher at decay 0 against the student as its own target; UniMatch's
two strong views and feature stream, its channel dropout and where its gradient goes."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from semiseg_tf import models
from semiseg_tf.augment import boxmask
from semiseg_tf.semisup import mean_teacher, methods
from tests.test_losses import linear_network, softmax


def boxes(count, size=8, first_seed=0):
    """UniMatch boxes for `count` samples, with at least one present and one absent among them."""
    params = boxmask.PseudoLabelBoxParams()
    masks = np.stack([boxmask.pseudo_label_box_mask(tf.constant([first_seed + i, 3], tf.int64), size,
                                                    size, params).numpy() for i in range(count)])
    return masks


def unlabelled_pair(seed, count=4, size=8):
    """Two unlabelled batches with weak and strong views, some invalid pixels, and boxes in the first."""
    rng = np.random.RandomState(seed)
    weak, strong = rng.normal(size=(2, 2, count, size, size, 3)).astype(np.float32)
    valid = np.ones((2, count, size, size, 1), np.float32)
    valid[0, :, :, -2:] = 0          # the first batch's crops end two columns early,
    valid[1, :, :2] = 0              # the second's start two rows late
    box = boxes(count)
    assert 0 < box.reshape(count, -1).max(1).sum() < count    # some samples with a box, some without
    batch_a = {"image": weak[0], "student_image": strong[0], "valid": valid[0], "mix_mask": box}
    batch_b = {"image": weak[1], "student_image": strong[1], "valid": valid[1]}
    return batch_a, batch_b


def linear_pair(seed=7, teacher_scale=4.0):
    """1x1-convolution student and target networks (the target's logits scaled up so that its
    confidence falls on both sides of 0.95)."""
    rng = np.random.RandomState(seed)
    w_student, w_teacher = rng.normal(size=(2, 3, 4)).astype(np.float32)
    w_teacher *= teacher_scale
    bias = rng.normal(size=4).astype(np.float32)
    return (linear_network(w_student, bias), linear_network(w_teacher, bias), w_student, w_teacher,
            bias)


def numpy_fixmatch(batch_a, batch_b, w_student, w_teacher, bias, thresh, average):
    """UniMatch's fixmatch.py unlabelled loss, in numpy float64."""
    box = batch_a["mix_mask"].astype(np.float64)
    strong = batch_a["student_image"] * (1 - box) + batch_b["student_image"] * box
    target = ((batch_a["image"] @ w_teacher + bias) * (1 - box)
              + (batch_b["image"] @ w_teacher + bias) * box).astype(np.float64)
    valid = (batch_a["valid"] * (1 - box) + batch_b["valid"] * box)[..., 0]
    probs = softmax(target)
    pseudo_label, confidence = probs.argmax(-1), probs.max(-1)
    student = (strong @ w_student + bias).astype(np.float64)
    log_ps = student - student.max(-1, keepdims=True)
    log_ps -= np.log(np.exp(log_ps).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_ps, pseudo_label[..., None], -1)[..., 0]
    confident = confidence >= thresh
    total = (ce * confident * valid).sum()
    over = {"valid": valid.sum(), "confident": (confident * valid).sum(), "pixels": valid.size}
    return total / over[average], confident, valid, strong, pseudo_label


@pytest.mark.parametrize("average", ["valid", "confident", "pixels"])
def test_pseudo_label_loss_matches_numpy(average):
    student, teacher, w_student, w_teacher, bias = linear_pair()
    batch_a, batch_b = unlabelled_pair(1)
    model = mean_teacher.MeanTeacher(student, teacher, methods.pseudo_labels.FixMatch(), cons_weight=1.0,
                                     conf_thresh=0.95, cons_loss_fn="hard_ce", conf_per_pixel=True,
                                     cons_average=average)
    loss, share, terms = model.consistency((batch_a, batch_b))
    expected, confident, valid, strong, pseudo_label = numpy_fixmatch(
        batch_a, batch_b, w_student, w_teacher, bias, 0.95, average)
    assert 0.2 < confident.mean() < 0.9          # the threshold cuts somewhere in the middle
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(share), confident.mean(), rtol=1e-6)


def test_strong_view_and_pseudo_labels_are_mixed_by_the_same_box():
    student, teacher, w_student, w_teacher, bias = linear_pair()
    batch_a, batch_b = unlabelled_pair(2)
    terms = methods.pseudo_labels.FixMatch().terms(student, teacher, (batch_a, batch_b))
    box = batch_a["mix_mask"][..., 0] > 0.5
    mixed = np.asarray(terms.panels["strong_mixed_input"])
    # Inside the box every pixel is the second image's strong view, outside the first's; the
    # weak views never reach the student.
    np.testing.assert_array_equal(mixed[box], batch_b["student_image"][box])
    np.testing.assert_array_equal(mixed[~box], batch_a["student_image"][~box])
    pseudo_label = np.argmax(terms.teacher_probs.numpy(), -1)
    target_a = np.argmax(batch_a["image"] @ w_teacher + bias, -1)
    target_b = np.argmax(batch_b["image"] @ w_teacher + bias, -1)
    np.testing.assert_array_equal(pseudo_label[box], target_b[box])
    np.testing.assert_array_equal(pseudo_label[~box], target_a[~box])
    np.testing.assert_array_equal(np.asarray(terms.loss_mask)[..., 0],
                                  np.where(box, batch_b["valid"][..., 0], batch_a["valid"][..., 0]))


def batch_norm_network(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((None, None, 3)),
                             keras.layers.Conv2D(8, 3, padding="same"),
                             keras.layers.BatchNormalization(),
                             keras.layers.ReLU(),
                             keras.layers.Conv2D(4, 1)])


def test_the_pasted_images_pseudo_labels_come_from_inference_mode():
    """As UniMatch's `model.eval()` before predicting the mix source: moving statistics for the
    second image, batch statistics for the first (and `mix_source_inference=False` for both)."""
    network = batch_norm_network(3)
    bn = network.layers[1]
    bn.moving_mean.assign(np.full(8, 0.7, np.float32))      # unlike any batch's mean
    statistics = [v.numpy() for v in (bn.moving_mean, bn.moving_variance)]

    def restore():
        for variable, value in zip((bn.moving_mean, bn.moving_variance), statistics):
            variable.assign(value)

    def run(images, training):
        # From the same moving statistics each time (a training-mode pass updates them).
        restore()
        return network(images, training=training).numpy()
    batch_a, batch_b = unlabelled_pair(3)
    for inference in (True, False):
        expected_a = run(batch_a["image"], True)
        expected_b, other_b = (run(batch_b["image"], not inference),
                               run(batch_b["image"], inference))
        restore()
        fixmatch = methods.pseudo_labels.FixMatch(mix_source_inference=inference)
        logits_a, logits_b = fixmatch.target_logits(network, batch_a, batch_b, training=True)
        np.testing.assert_allclose(logits_a.numpy(), expected_a, atol=1e-5)
        np.testing.assert_allclose(logits_b.numpy(), expected_b, atol=1e-5)
        assert np.abs(logits_b.numpy() - other_b).max() > 1e-2


def fixmatch_model(student, teacher, alpha):
    model = mean_teacher.MeanTeacher(student, teacher, methods.pseudo_labels.FixMatch(), cons_weight=0.5,
                                     sup_weight=0.5, conf_thresh=0.6, teacher_alpha=alpha,
                                     cons_loss_fn="hard_ce", conf_per_pixel=True,
                                     cons_average="valid", bn_stats_from_unlabelled=False)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.initialise((8, 8, 3))
    return model


def test_ema_teacher_at_decay_0_equals_the_student_as_its_own_target():
    """UniMatch v2's EMA target at decay 0 is FixMatch's student target: three steps alike (with
    batch norm, the statistics of the labelled pass only, so that both keep the same)."""
    pi = fixmatch_model(*(2 * [batch_norm_network(5)]), alpha=0.99)
    ema = fixmatch_model(batch_norm_network(5), batch_norm_network(6), alpha=0.0)
    rng = np.random.RandomState(9)
    losses = []
    for step in range(3):
        batch_a, batch_b = unlabelled_pair(10 + step)
        data = {"labelled": {"image": rng.normal(size=(2, 8, 8, 3)).astype(np.float32),
                             "label": rng.randint(0, 4, (2, 8, 8)).astype(np.int32)},
                "unlabelled": (batch_a, batch_b)}
        logs_pi, logs_ema = pi.train_step(data), ema.train_step(data)
        losses.append(float(logs_pi["cons_loss"]))
        np.testing.assert_allclose(float(logs_ema["cons_loss"]), float(logs_pi["cons_loss"]),
                                   rtol=1e-5)
    assert max(losses) > 0                       # the pseudo-labels counted
    for a, b in zip(pi.student.weights, ema.student.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)
    moved = max(np.abs(a.numpy() - b.numpy()).max()
                for a, b in zip(pi.student.weights, batch_norm_network(5).weights))
    assert moved > 1e-2


def test_supervised_weight_scales_its_gradient():
    student, teacher, *_ = linear_pair()
    rng = np.random.RandomState(4)
    labelled = {"image": rng.normal(size=(2, 8, 8, 3)).astype(np.float32),
                "label": rng.randint(0, 4, (2, 8, 8)).astype(np.int32)}
    moves = []
    for weight in (1.0, 0.25):
        net = keras.models.clone_model(student)
        net.set_weights(student.get_weights())
        model = mean_teacher.MeanTeacher(net, net, None, cons_weight=0.0, sup_weight=weight)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        model.initialise((8, 8, 3))
        model.train_step({"labelled": labelled})
        moves.append(net.get_weights()[0] - student.get_weights()[0])
    np.testing.assert_allclose(moves[1], 0.25 * moves[0], rtol=1e-4, atol=1e-8)


def test_averaging_over_confident_pixels_needs_per_pixel_confidence():
    net = keras.Sequential()
    with pytest.raises(ValueError, match="per-pixel confidence"):
        mean_teacher.MeanTeacher(net, net, methods.pseudo_labels.FixMatch(), cons_average="confident")
    with pytest.raises(ValueError, match="cons_average"):
        mean_teacher.MeanTeacher(net, net, methods.pseudo_labels.FixMatch(), cons_average="mean")


# --- UniMatch: two strong views and the feature stream -----------------------------------------

def split_network(w_encoder, b_encoder, w_decoder, b_decoder):
    """image -(1x1 conv)-> features -(1x1 conv, a nested decoder)-> logits."""
    inputs = keras.Input((None, None, 3))
    encoder = keras.layers.Conv2D(w_encoder.shape[1], 1)
    features = encoder(inputs)
    image_in, features_in = keras.Input((None, None, 3)), keras.Input((None, None, w_encoder.shape[1]))
    decoder_conv = keras.layers.Conv2D(w_decoder.shape[1], 1)
    decoder = keras.Model([image_in, features_in], decoder_conv(features_in))
    net = keras.Model(inputs, decoder([inputs, features]))
    encoder.set_weights([w_encoder[None, None], b_encoder])
    decoder_conv.set_weights([w_decoder[None, None], b_decoder])
    return models.registry.attach_feature_split(net, keras.Model(inputs, [features]), decoder)


def unimatch_batches(seed):
    batch_a, batch_b = unlabelled_pair(seed)
    rng = np.random.RandomState(seed + 100)
    for batch in (batch_a, batch_b):
        batch["student_image_2"] = rng.normal(size=batch["image"].shape).astype(np.float32)
    params = boxmask.PseudoLabelBoxParams()
    batch_a["mix_mask_2"] = np.stack([boxmask.pseudo_label_box_mask(
        tf.constant([50 + i, 3], tf.int64), 8, 8, params).numpy() for i in range(4)])
    batch_a["feature_noise"] = rng.uniform(size=(4, methods.pseudo_labels.FEATURE_NOISE_MAPS,
                                                 methods.pseudo_labels.FEATURE_NOISE_CHANNELS)).astype(np.float32)
    return batch_a, batch_b


def numpy_hard_ce_valid(student_logits, target_logits, valid, thresh):
    probs = softmax(target_logits.astype(np.float64))
    log_ps = student_logits.astype(np.float64)
    log_ps = log_ps - log_ps.max(-1, keepdims=True)
    log_ps -= np.log(np.exp(log_ps).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_ps, probs.argmax(-1)[..., None], -1)[..., 0]
    return (ce * (probs.max(-1) >= thresh) * valid[..., 0]).sum() / valid.sum()


@pytest.mark.parametrize("pi", [True, False])
def test_unimatch_streams_match_numpy(pi):
    """Both strong views (each its own box, pasting the second image's view of the same number),
    the feature stream (the weak view's features with dropped channels, against its own unmixed
    target) and the 0.25 / 0.25 / 0.5 weights; the student as its target, or an EMA teacher."""
    rng = np.random.RandomState(21)
    w_enc, w_dec = rng.normal(size=(3, 6)).astype(np.float32), 3 * rng.normal(size=(6, 4)).astype(np.float32)
    b_enc, b_dec = rng.normal(size=6).astype(np.float32), rng.normal(size=4).astype(np.float32)
    student = split_network(w_enc, b_enc, w_dec, b_dec)
    t_dec = w_dec * 1.3 if not pi else w_dec
    teacher = student if pi else split_network(w_enc, b_enc, t_dec, b_dec)
    batch_a, batch_b = unimatch_batches(22)
    model = mean_teacher.MeanTeacher(student, teacher, methods.pseudo_labels.UniMatch(), conf_thresh=0.95,
                                     cons_loss_fn="hard_ce", conf_per_pixel=True,
                                     cons_average="valid")
    loss, _, _ = model.consistency((batch_a, batch_b))

    def net(x, w_decoder, drop=None):
        features = x @ w_enc + b_enc
        if drop is not None:
            features = features * drop
        return features @ w_decoder + b_dec
    target_a, target_b = net(batch_a["image"], t_dec), net(batch_b["image"], t_dec)
    expected = 0.0
    for weight, box, key in ((0.25, batch_a["mix_mask"], "student_image"),
                             (0.25, batch_a["mix_mask_2"], "student_image_2")):
        strong = batch_a[key] * (1 - box) + batch_b[key] * box
        valid = batch_a["valid"] * (1 - box) + batch_b["valid"] * box
        expected += weight * numpy_hard_ce_valid(net(strong, w_dec), target_a * (1 - box)
                                                 + target_b * box, valid, 0.95)
    keep = (batch_a["feature_noise"][:, 0, :6] >= 0.5)[:, None, None, :] * 2.0
    expected += 0.5 * numpy_hard_ce_valid(net(batch_a["image"], w_dec, keep), target_a,
                                          batch_a["valid"], 0.95)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4)


def test_feature_dropout_drops_whole_channels_about_half_the_time():
    rng = np.random.RandomState(3)
    features = rng.uniform(1, 2, size=(16, 5, 5, 64)).astype(np.float32)
    uniform = tf.random.stateless_uniform([16, methods.pseudo_labels.FEATURE_NOISE_CHANNELS], [1, 2])
    dropped = methods.pseudo_labels.feature_dropout(tf.constant(features), uniform, 0.5).numpy()
    zero = dropped == 0
    # A channel of a sample is dropped everywhere or nowhere, and kept ones are doubled.
    assert (zero.all(axis=(1, 2)) | ~zero.any(axis=(1, 2))).all()
    kept = ~zero
    np.testing.assert_allclose(dropped[kept], 2 * features[kept], rtol=1e-6)
    share = zero.all(axis=(1, 2)).mean()
    assert 0.44 < share < 0.56, share       # 1024 draws: 3.8 standard deviations either side
    with pytest.raises(ValueError, match="FEATURE_NOISE_CHANNELS"):
        methods.pseudo_labels.feature_dropout(tf.zeros((1, 2, 2, 4096)), uniform[:1], 0.5)


def test_feature_stream_gradient_reaches_the_network_only_through_its_own_loss():
    """With the student as its target, the weak view's prediction carries no gradient: with only
    the feature stream weighted, the step's gradient is that of the dropped-feature decoding's loss
    against a constant target, and it reaches the decoder; with the feature stream at weight 0 the
    weak view's pass contributes nothing."""
    network = models.build("tiny_unet", 4)
    split = models.feature_split(network)
    batch_a, batch_b = unimatch_batches(30)
    variables = network.trainable_variables
    statistics = [(v, v.numpy()) for v in network.non_trainable_variables]

    def gradients(weights):
        # From the same moving statistics each time: the pasted image's targets read them.
        for variable, value in statistics:
            variable.assign(value)
        model = mean_teacher.MeanTeacher(network, network, methods.pseudo_labels.UniMatch(weights=weights),
                                         conf_thresh=0.0, cons_loss_fn="hard_ce",
                                         cons_average="valid")
        with tf.GradientTape() as tape:
            loss, _, _ = model.consistency((batch_a, batch_b))
        return tape.gradient(loss, variables), loss

    fp_only, _ = gradients((0.0, 0.0, 1.0))
    weak = tf.constant(batch_a["image"])
    with tf.GradientTape() as tape:
        features = split.encode(weak, True)
        dropped = [methods.pseudo_labels.feature_dropout(f, batch_a["feature_noise"][:, k], 0.5)
                   for k, f in enumerate(features)]
        # Clean and dropped features decoded as one batch (the decoder's batch norm sees both), as
        # UniMatch's `_decode(cat(c1, dropout(c1)), ...)`; the clean half is the target.
        both = split.decode(tf.concat([weak, weak], 0),
                            [tf.concat([f, d], 0) for f, d in zip(features, dropped)], True)
        target, logits = tf.stop_gradient(both[:4]), both[4:]
        labels = tf.argmax(target, -1)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)[..., None]
        manual = tf.reduce_sum(ce * batch_a["valid"]) / tf.reduce_sum(batch_a["valid"])
    expected = tape.gradient(manual, variables)
    decoder_ids = {id(v) for v in split.decoder.trainable_variables} - {
        id(v) for v in split.encoder.trainable_variables}
    assert decoder_ids
    for got, want, variable in zip(fp_only, expected, variables):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-3, atol=2e-6,
                                   err_msg=variable.path)
        if id(variable) in decoder_ids:
            assert np.abs(got.numpy()).max() > 0, variable.path
    strong_only, _ = gradients((0.5, 0.5, 0.0))
    strong_a, _ = gradients((0.5, 0.0, 0.0))
    strong_b, _ = gradients((0.0, 0.5, 0.0))
    for both, a, b in zip(strong_only, strong_a, strong_b):
        np.testing.assert_allclose(both.numpy(), a.numpy() + b.numpy(), rtol=1e-4, atol=1e-6)


def test_unimatch_needs_a_network_with_a_split():
    network = models.build("pspnet_small", 3)
    with pytest.raises(ValueError, match="no encoder/decoder split"):
        methods.pseudo_labels.UniMatch().consistency(network, network, unimatch_batches(1))


def test_flags_refuse_unimatch_without_a_split_and_confident_average_without_per_pixel(tmp_path):
    from conftest import parse_flags
    from semiseg_tf import config
    with pytest.raises(config.ConfigError, match=r"^--perturbation=unimatch: .*--arch=pspnet_small"):
        parse_flags(workdir=str(tmp_path), perturbation="unimatch", arch="pspnet_small")
    with pytest.raises(config.ConfigError, match=r"^--cons_average=confident: .*--conf_per_pixel"):
        parse_flags(workdir=str(tmp_path), cons_average="confident")
    cfg, text = parse_flags(workdir=str(tmp_path), pseudo_label_thresh=0.95)
    assert cfg.method.conf_thresh == 0.95 and "--conf_thresh=0.95" in text


def test_the_weak_to_strong_perturbations_take_every_parameter_from_flags(tmp_path):
    """Their defaults are the classes' own (so recipes train as before); each flag reaches them."""
    from conftest import parse_flags
    from semiseg_tf import config, training
    cfg, _ = parse_flags(workdir=str(tmp_path), perturbation="unimatch", arch="small_unet")
    default = methods.pseudo_labels.UniMatch()
    built = training.build_perturbation(cfg)
    assert (built.box_params, built.mix_source_inference, built.dropout_rate, built.weights) == (
        default.box_params, default.mix_source_inference, default.dropout_rate, default.weights)
    cfg, _ = parse_flags(workdir=str(tmp_path), perturbation="unimatch", arch="small_unet",
                         pseudo_label_box_prob=1.0, pseudo_label_box_area="0.1:0.2",
                         pseudo_label_box_ratio="0.5:2", pseudo_label_mix_inference="false",
                         unimatch_dropout=0.3, unimatch_weights="0.5,0.5,0")
    built = training.build_perturbation(cfg)
    assert built.box_params == boxmask.PseudoLabelBoxParams(prob=1.0, area_range=(0.1, 0.2),
                                                            ratio_range=(0.5, 2.0))
    assert not built.mix_source_inference
    assert built.dropout_rate == 0.3 and built.weights == (0.5, 0.5, 0.0)
    cfg, _ = parse_flags(workdir=str(tmp_path), perturbation="fixmatch", pseudo_label_box_prob=0)
    assert training.build_perturbation(cfg).box_params.prob == 0
    for flag, value, message in [("pseudo_label_box_area", "0.4:0.1", "with 0 < a <= b <= 1"),
                                 ("unimatch_weights", "1,2", "expected 3 comma-separated weights"),
                                 ("unimatch_dropout", 1.0, "must lie in"),
                                 ("pseudo_label_box_prob", 2, "must lie in")]:
        with pytest.raises(config.ConfigError, match=rf"^--{flag}=.*{message}"):
            parse_flags(workdir=str(tmp_path), **{flag: value})
