"""UniMatch V2's pieces against numpy and torch: the complementary dropout, the two strong views'
loss through the dropped features, the warmed-up EMA decay, AdamW with a backbone learning rate,
the frozen backbone; and the flags that reach them."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from semiseg_tf import models
from semiseg_tf.semisup import mean_teacher, methods, optim
from tests.test_fixmatch import numpy_hard_ce_valid, split_network, unimatch_batches


def test_complementary_dropout_gives_each_channel_to_one_view_and_keeps_whole_pairs():
    rng = np.random.RandomState(4)
    count, channels = 6, 8
    features = [rng.uniform(1, 2, size=(2 * count, 3, 3, channels)).astype(np.float32),
                rng.uniform(1, 2, size=(2 * count, 5, channels)).astype(np.float32)]
    uniform = rng.uniform(size=(count, methods.pseudo_labels.FEATURE_NOISE_CHANNELS)).astype(np.float32)
    kept = np.array([True, False, False, True, False, False])
    dropped = methods.pseudo_labels.complementary_dropout([tf.constant(f) for f in features],
                                                  tf.constant(uniform), tf.constant(kept))
    first = np.where(uniform[:, :channels] < 0.5, 2.0, 0.0)
    first[kept] = 1.0
    second = 2.0 - first
    for feature, got in zip(features, dropped):
        mask = np.concatenate([first, second])
        mask = mask.reshape((2 * count,) + (1,) * (feature.ndim - 2) + (channels,))
        np.testing.assert_allclose(got.numpy(), feature * mask, rtol=1e-6)
    # Between them the two views of a dropped pair hold each channel once, doubled.
    assert set(np.unique(first[~kept])) == {0.0, 2.0}
    np.testing.assert_array_equal(first + second, 2.0)
    with pytest.raises(ValueError, match="FEATURE_NOISE_CHANNELS"):
        methods.pseudo_labels.complementary_dropout([tf.zeros((2, 2, 2, 4096))], uniform[:1], kept[:1])


def unimatch_v2_batches(seed):
    batch_a, batch_b = unimatch_batches(seed)
    rng = np.random.RandomState(seed + 7)
    batch_a["channel_noise"] = rng.uniform(
        size=(4, methods.pseudo_labels.FEATURE_NOISE_CHANNELS)).astype(np.float32)
    batch_a["pair_kept"] = np.array([True, False, False, True])
    return batch_a, batch_b


@pytest.mark.parametrize("complementary", [True, False])
def test_unimatch_v2_loss_matches_numpy(complementary):
    """Each strong view pasted with the second image's view of the same number by its own box,
    both through the encoder as one batch whose features are dropped complementarily (or not),
    against the teacher's weak-view targets mixed by the same box; weights 0.5 and 0.5."""
    rng = np.random.RandomState(31)
    w_enc, w_dec = rng.normal(size=(3, 6)).astype(np.float32), 3 * rng.normal(size=(6, 4)).astype(np.float32)
    b_enc, b_dec = rng.normal(size=6).astype(np.float32), rng.normal(size=4).astype(np.float32)
    student = split_network(w_enc, b_enc, w_dec, b_dec)
    t_dec = 1.3 * w_dec
    teacher = split_network(w_enc, b_enc, t_dec, b_dec)
    batch_a, batch_b = unimatch_v2_batches(32)
    model = mean_teacher.MeanTeacher(
        student, teacher, methods.pseudo_labels.UniMatchV2(complementary=complementary),
        conf_thresh=0.95, cons_loss_fn="hard_ce", conf_per_pixel=True, cons_average="valid")
    loss, _, _ = model.consistency((batch_a, batch_b))

    def net(x, w_decoder, mask=None):
        features = x @ w_enc + b_enc
        return (features if mask is None else features * mask) @ w_decoder + b_dec
    first = np.where(batch_a["channel_noise"][:, :6] < 0.5, 2.0, 0.0)
    first[batch_a["pair_kept"]] = 1.0
    masks = (first, 2.0 - first) if complementary else (None, None)
    target_a, target_b = net(batch_a["image"], t_dec), net(batch_b["image"], t_dec)
    expected = 0.0
    for box, key, mask in ((batch_a["mix_mask"], "student_image", masks[0]),
                           (batch_a["mix_mask_2"], "student_image_2", masks[1])):
        strong = batch_a[key] * (1 - box) + batch_b[key] * box
        valid = batch_a["valid"] * (1 - box) + batch_b["valid"] * box
        mask = None if mask is None else mask[:, None, None, :]
        expected += 0.5 * numpy_hard_ce_valid(net(strong, w_dec, mask),
                                              target_a * (1 - box) + target_b * box, valid, 0.95)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4)


def test_unimatch_v2_targets_come_from_the_teacher_in_inference_mode():
    """With batch norm in the teacher, its targets use the moving statistics (the original's
    model_ema.eval()): the same as a teacher called with training=False, not with True."""
    network = models.build("tiny_unet", 4)
    teacher = models.build("tiny_unet", 4)
    teacher.set_weights(network.get_weights())
    for variable in teacher.non_trainable_variables:
        if "moving_mean" in variable.path:
            variable.assign(variable + 0.5)
    batch_a, batch_b = unimatch_v2_batches(5)
    seen = []
    original = methods.pseudo_labels.teacher_logits

    def recording(net, images, training):
        seen.append((net is teacher, training))
        return original(net, images, training)
    perturbation = methods.pseudo_labels.UniMatchV2()
    try:
        methods.pseudo_labels.teacher_logits = recording
        perturbation.consistency(network, teacher, (batch_a, batch_b))
    finally:
        methods.pseudo_labels.teacher_logits = original
    assert seen == [(True, False), (True, False)]


def test_unimatch_v2_draws_its_noise_with_each_sample():
    perturbation = methods.pseudo_labels.UniMatchV2(kept_share=0.25)
    draw = tf.function(lambda seed: perturbation.sample_extras(seed, (8, 8)))
    draws = [draw(tf.constant([i, 9], tf.int64)) for i in range(400)]
    assert draws[0]["channel_noise"].shape == (methods.pseudo_labels.FEATURE_NOISE_CHANNELS,)
    kept = np.mean([bool(d["pair_kept"]) for d in draws])
    assert 0.19 < kept < 0.31, kept       # 400 draws of p = 0.25: about 3 standard deviations
    again = perturbation.sample_extras(tf.constant([3, 9], tf.int64), (8, 8))
    np.testing.assert_array_equal(again["channel_noise"], draws[3]["channel_noise"])
    assert not np.array_equal(draws[4]["channel_noise"], draws[3]["channel_noise"])


def test_teacher_alpha_warmup_follows_min_of_one_minus_one_over_t_and_alpha():
    keras.utils.set_random_seed(1)
    alpha, steps = 0.6, 4
    student = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(5, 1)])
    teacher = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(5, 1)])
    model = mean_teacher.MeanTeacher(student, teacher, cons_weight=0.0, teacher_alpha=alpha,
                                     teacher_alpha_warmup=True)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    model.build((4, 4, 3))
    rng = np.random.RandomState(2)
    expected = [w.numpy() for w in teacher.weights]
    for t in range(1, steps + 1):
        batch = {"labelled": {"image": tf.constant(rng.normal(size=(2, 4, 4, 3)), tf.float32),
                              "label": tf.constant(rng.randint(0, 5, (2, 4, 4)), tf.int32)}}
        model.train_step(batch)
        decay = min(1 - 1 / t, alpha)      # 0 (a copy), 0.5, then alpha
        expected = [decay * e + (1 - decay) * s.numpy() for e, s in zip(expected, student.weights)]
        for got, want in zip(teacher.weights, expected):
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-7)
    assert not np.allclose(teacher.weights[0].numpy(), student.weights[0].numpy())


def test_adamw_with_a_backbone_rate_steps_as_torchs_adamw_with_two_parameter_groups():
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(6)
    values = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(2)]
    grads = [[rng.normal(size=(3, 4)).astype(np.float32) for _ in range(2)] for _ in range(5)]
    lr, scale, decay = 0.01, 0.025, 0.05
    optimizer = optim.build_optimizer("adamw", lr, adamw_weight_decay=decay)
    variables = [keras.Variable(v) for v in values]
    optimizer.build(variables)
    optimizer.scale_learning_rate(variables[:1], scale)       # the "backbone"
    params = [torch.nn.Parameter(torch.tensor(v)) for v in values]
    reference = torch.optim.AdamW([{"params": params[:1], "lr": lr * scale},
                                   {"params": params[1:], "lr": lr}], lr=lr, weight_decay=decay)
    for step in grads:
        optimizer.apply_gradients(zip([tf.constant(g) for g in step], variables))
        for param, g in zip(params, step):
            param.grad = torch.tensor(g)
        reference.step()
    for variable, param, start in zip(variables, params, values):
        np.testing.assert_allclose(variable.numpy(), param.detach().numpy(), rtol=1e-5, atol=1e-7)
        assert np.abs(variable.numpy() - start).max() > 1e-3


def test_freeze_backbone_trains_the_decoder_only(tmp_path):
    from conftest import parse_flags
    from semiseg_tf import config
    from semiseg_tf.training import builders
    cfg, _ = parse_flags(workdir=str(tmp_path), arch="dinov2_tiny", crop_size="28,28",
                         freeze_backbone=True, cons_weight=0, batch_size=2)
    model = builders.build_model(cfg, num_classes=4)
    model.build((28, 28, 3))
    backbone = models.backbone_of(model.student)
    assert backbone.weights and not backbone.trainable_weights
    frozen = [w.numpy() for w in backbone.weights]
    decoder = [w.numpy() for w in model.student.trainable_weights]
    rng = np.random.RandomState(3)
    model.train_step({"labelled": {
        "image": tf.constant(rng.normal(size=(2, 28, 28, 3)), tf.float32),
        "label": tf.constant(rng.randint(0, 4, (2, 28, 28)), tf.int32)}})
    for before, after in zip(frozen, backbone.weights):
        np.testing.assert_array_equal(before, after.numpy())
    assert any(not np.array_equal(b, a.numpy()) for b, a in zip(decoder,
                                                                 model.student.trainable_weights))
    # The teacher lists its weights as the student does, so the EMA pairs them right.
    assert [w.path for w in model.teacher.weights] == [w.path for w in model.student.weights]
    cfg, _ = parse_flags(workdir=str(tmp_path), arch="small_unet", freeze_backbone=True)
    with pytest.raises(config.ConfigError, match="^--freeze_backbone: --arch=small_unet has no"):
        builders.build_model(cfg, num_classes=4)


def test_unimatch_v2_takes_its_flags(tmp_path):
    from conftest import parse_flags
    from semiseg_tf import config
    from semiseg_tf.training import builders
    cfg, _ = parse_flags(workdir=str(tmp_path), perturbation="unimatch_v2", arch="dinov2_tiny",
                         crop_size="28,28", comp_dropout=False, comp_dropout_kept=0.3)
    perturbation = builders.build_perturbation(cfg)
    assert isinstance(perturbation, methods.pseudo_labels.UniMatchV2)
    assert (perturbation.complementary, perturbation.kept_share, perturbation.weights[:2]) == (
        False, 0.3, (0.5, 0.5))
    with pytest.raises(config.ConfigError, match=r"^--perturbation=unimatch_v2: .*--arch=pspnet_small"):
        parse_flags(workdir=str(tmp_path), perturbation="unimatch_v2", arch="pspnet_small")
    # Without the dropout the two views need no encoder/decoder split.
    parse_flags(workdir=str(tmp_path), perturbation="unimatch_v2", arch="pspnet_small",
                comp_dropout=False)
    with pytest.raises(config.ConfigError, match=r"^--comp_dropout_kept=1.5: must lie in \[0, 1\]"):
        parse_flags(workdir=str(tmp_path), comp_dropout_kept=1.5)
