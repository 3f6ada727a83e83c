"""The paper's four networks: shapes, parameter counts, config round trip, frozen batch norm,
learning-rate groups, and the layers they are built from, each against an independent oracle."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from semiseg_tf import models
from semiseg_tf.models import layers
from semiseg_tf.semisup import optim

SMALL = ["deeplab2_small", "deeplab3plus_small", "pspnet_small", "dense_unet_small"]


def parameter_count(network):
    """Conv weights and biases, batch-norm gamma/beta; not the moving statistics (PyTorch's count)."""
    return sum(int(np.prod(w.shape)) for w in network.weights if "moving_" not in w.path)


@pytest.mark.parametrize("arch", SMALL)
def test_logits_at_input_resolution_for_odd_and_even_sizes(arch):
    keras.utils.set_random_seed(0)
    network = models.build(arch, 5)
    for height, width in [(321, 321), (320, 320), (256, 512), (224, 224)]:
        logits = network(tf.random.normal((1, height, width, 3)), training=False)
        assert logits.shape == (1, height, width, 5), (arch, height, width)
        assert np.isfinite(logits.numpy()).all()


@pytest.mark.parametrize("arch", [*SMALL, "small_unet", "tiny_unet"])
def test_every_network_takes_images_of_any_band_count(arch):
    for bands in (1, 4, 12):
        network = models.build(arch, 5, bands=bands)
        images = tf.random.normal((1, 32, 32, bands))
        logits = network(images, training=False)
        assert network.input_shape[-1] == bands and logits.shape == (1, 32, 32, 5)
        if models.has_feature_split(arch):
            split = models.feature_split(network)
            decoded = split.decode(images, split.encode(images, training=False), training=False)
            np.testing.assert_allclose(decoded.numpy(), logits.numpy(), atol=1e-5)


def test_parameter_counts_equal_the_reference_networks():
    classes = 21
    resnet101 = 42_500_160          # torchvision ResNet-101 without its classifier
    densenet161 = 26_472_000        # torchvision DenseNet-161 features

    def conv(cin, cout, k=1, bias=False):
        return cin * cout * k * k + (cout if bias else 0)

    def bn(c):
        return 2 * c
    # DeepLab v2's classifier: four 3x3 dilated convs 2048 -> C with bias.
    deeplab2 = resnet101 + 4 * (2048 * 9 * classes + classes)
    # DeepLab v3+: ASPP (1x1, three 3x3, image pooling, projection; 256 channels, BN each), 48-channel
    # low-level projection, two 3x3 decoder convs, classifier.
    aspp = (conv(2048, 256) + bn(256) + 3 * (conv(2048, 256, 3) + bn(256))
            + conv(2048, 256) + bn(256) + conv(5 * 256, 256) + bn(256))
    decoder = (conv(256, 48) + bn(48) + conv(304, 256, 3) + bn(256) + conv(256, 256, 3) + bn(256)
               + conv(256, classes, 1, bias=True))
    deeplab3plus = resnet101 + aspp + decoder
    # PSPNet: MIT's deep stem (3x3 convs 3->64->64->128 with BN) replaces the 7x7 conv and its BN;
    # layer1's first block then reads 128 channels instead of 64 (its 1x1 conv and downsample).
    deep_stem_resnet101 = (resnet101 - conv(3, 64, 7) - bn(64)
                           + conv(3, 64, 3) + bn(64) + conv(64, 64, 3) + bn(64) + conv(64, 128, 3)
                           + bn(128) + conv(128 - 64, 64) + conv(128 - 64, 256))
    pspnet = (deep_stem_resnet101 + 4 * (conv(2048, 512) + bn(512)) + conv(4096, 512, 3) + bn(512)
              + conv(512, classes, 1, bias=True))
    # Dense U-net: line0 1x1 conv with bias, four decoder blocks (3x3 conv + BN), final conv, BN, 1x1.
    dense_unet = (densenet161 + conv(2112, 2208, 1, bias=True)
                  + conv(2208, 768, 3) + bn(768) + conv(768, 384, 3) + bn(384)
                  + conv(384, 96, 3) + bn(96) + conv(96, 96, 3) + bn(96)
                  + conv(96, 64, 3) + bn(64) + conv(64, classes, 1, bias=True))
    expected = {"deeplab2_resnet101": deeplab2, "deeplab3plus_resnet101": deeplab3plus,
                "pspnet_resnet101": pspnet, "dense_unet_densenet161": dense_unet}
    for arch, count in expected.items():
        network = models.build(arch, classes)
        assert parameter_count(network) == count, arch
        assert parameter_count(models.backbone_of(network)) == (
            densenet161 if arch.startswith("dense") else
            deep_stem_resnet101 if arch.startswith("psp") else resnet101), arch
        del network


def test_authors_two_branch_aspp_drops_the_last_two_branches():
    full = models.build("deeplab2_small", 3)
    authors = models.build("deeplab2_small", 3, deeplab2_aspp_two_branches=True)
    full_layers = {layer.name for layer in full.layers if layer.name.startswith("aspp_conv")}
    authors_layers = {layer.name for layer in authors.layers if layer.name.startswith("aspp_conv")}
    assert full_layers == {"aspp_conv_d6", "aspp_conv_d12", "aspp_conv_d18", "aspp_conv_d24"}
    assert authors_layers == {"aspp_conv_d6", "aspp_conv_d12"}


@pytest.mark.parametrize("arch", SMALL)
def test_get_config_round_trip_gives_the_same_network(arch):
    keras.utils.set_random_seed(1)
    network = models.build(arch, 4)
    clone = keras.Model.from_config(network.get_config())
    assert clone.get_config() == network.get_config()
    clone.set_weights(network.get_weights())
    assert [w.trainable for w in clone.weights] == [w.trainable for w in network.weights]
    images = tf.random.normal((2, 40, 56, 3))
    np.testing.assert_allclose(clone(images, training=False).numpy(),
                               network(images, training=False).numpy(), atol=1e-5)


def _one_training_step(network, optimizer):
    images = tf.random.normal((2, 32, 32, 3))
    labels = tf.random.uniform((2, 32, 32), 0, 3, tf.int32)
    with tf.GradientTape() as tape:
        logits = network(images, training=True)
        loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(labels, logits, True))
    grads = tape.gradient(loss, network.trainable_variables)
    optimizer.apply_gradients(zip(grads, network.trainable_variables))


def _batch_norm_values(network, backbone_only):
    scope = models.backbone_of(network) if backbone_only else network
    values = {}
    for layer in scope._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            for w in layer.weights:
                values[f"{layer.name}/{w.path.split('/')[-1]}"] = w.numpy()
    return values


def test_frozen_batch_norm_stays_frozen_in_training():
    keras.utils.set_random_seed(2)
    # DeepLab v2 (default): statistics and gamma/beta fixed; the classifier still learns.
    network = models.build("deeplab2_small", 3)
    before = _batch_norm_values(network, backbone_only=True)
    # (The bias: the backbone's N(0, 0.01) convs without normalisation give near-zero features, so
    # before ImageNet weights are loaded the classifier kernels get near-zero gradients.)
    head_before = network.get_layer("aspp_conv_d6").bias.numpy()
    _one_training_step(network, keras.optimizers.SGD(0.1))
    after = _batch_norm_values(network, backbone_only=True)
    assert len(before) == 4 * len([k for k in before if k.endswith("gamma")]) > 0
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert not np.allclose(network.get_layer("aspp_conv_d6").bias.numpy(), head_before)

    # DeepLab v3+ (the authors' freeze_batchnorm): backbone statistics fixed, gamma/beta trained;
    # the head's batch norm trains normally.
    network = models.build("deeplab3plus_small", 3)
    before = _batch_norm_values(network, backbone_only=False)
    _one_training_step(network, keras.optimizers.SGD(0.1))
    after = _batch_norm_values(network, backbone_only=False)
    backbone_names = set(_batch_norm_values(network, backbone_only=True))
    for name in before:
        changed = not np.array_equal(after[name], before[name])
        if name in backbone_names and "moving_" in name:
            assert not changed, name
        if name.endswith("gamma") or name.startswith("decoder_a_bn/moving"):
            assert changed, name

    # Without --freeze_bn, DeepLab v2's backbone uses batch statistics (moving ones move) but its
    # gamma/beta stay fixed, as the authors' requires_grad=False.
    network = models.build("deeplab2_small", 3, freeze_bn=False)
    before = _batch_norm_values(network, backbone_only=True)
    _one_training_step(network, keras.optimizers.SGD(0.1))
    after = _batch_norm_values(network, backbone_only=True)
    for name in before:
        changed = not np.array_equal(after[name], before[name])
        assert changed == ("moving_" in name), name


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_backbone_learning_rate_is_scaled(kind):
    """One step from fresh slots, against the update rule in numpy, per group."""
    keras.utils.set_random_seed(3)
    network = models.build("deeplab3plus_small", 3)
    lr, scale = 1e-2, 0.1
    optimizer = optim.build_optimizer(kind, lr, sgd_momentum=0.9)
    optimizer.build(network.trainable_variables)
    backbone_ids = {id(v) for v in models.backbone_of(network).trainable_variables}
    optimizer.scale_learning_rate(models.backbone_of(network).trainable_variables, scale)
    images = tf.random.normal((2, 24, 24, 3))
    labels = tf.random.uniform((2, 24, 24), 0, 3, tf.int32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
            labels, network(images, training=True), True))
    variables = network.trainable_variables
    grads = tape.gradient(loss, variables)
    before = [v.numpy() for v in variables]
    optimizer.apply_gradients(zip(grads, variables))
    assert backbone_ids and len(backbone_ids) < len(variables)
    for v, g, v0 in zip(variables, grads, before):
        group_lr = lr * (scale if id(v) in backbone_ids else 1.0)
        g = g.numpy().astype(np.float64)
        if kind == "adam":
            # First step: m = 0.1 g, v = 0.001 g^2, and PyTorch adds epsilon after the bias
            # correction: lr / (1 - 0.9) * m / (sqrt(v) / sqrt(1 - 0.999) + eps).
            expected = v0 - group_lr / 0.1 * (0.1 * g) / (np.sqrt(1e-3) * np.abs(g) / np.sqrt(1e-3) + 1e-8)
        else:               # momentum buffer starts at zero
            expected = v0 - group_lr * g
        # Steps are 1e-3 (backbone) and 1e-2 (head) per element; float32 rounding is far below 1e-6.
        np.testing.assert_allclose(v.numpy(), expected, rtol=0, atol=1e-6, err_msg=v.path)


def test_deeplab2_backbone_multiplicities_are_the_authors_module_tree():
    """The issue's count of the authors' ResNet-101 `pretrained_parameters()`: of the 104 backbone
    conv weights, conv1 listed once, the 99 block convs 3 times, the 4 downsample convs 4 times."""
    network = models.build("deeplab2_resnet101", 21)
    counts = {}
    for variable, count in models.deeplab_v2.authors_update_multiplicities(network):
        counts.setdefault(count, []).append(variable.path)
    assert {k: len(paths) for k, paths in counts.items()} == {1: 1, 3: 99, 4: 4}
    assert [path.split("/")[-2] for path in counts[1]] == ["conv1"]      # the stem's conv
    assert all("downsample" in path for path in counts[4])
    assert all(path.endswith("kernel") for paths in counts.values() for path in paths)
    with pytest.raises(ValueError, match="not a DeepLab v2"):
        models.deeplab_v2.authors_update_multiplicities(models.build("pspnet_small", 3))


def _pytorch14_repeated_steps(kind, value, gradients, count, lr, momentum=0.9, weight_decay=0.0):
    """PyTorch 1.4's Adam or SGD applied to a parameter listed `count` times in its group: one
    shared state, every copy updated in turn with the step's gradient (weight decay recomputed
    from the moved weight, as `d_p.add(weight_decay, p.data)` does). numpy float64."""
    p = value.astype(np.float64)
    m, v, buffer, state_step = np.zeros_like(p), np.zeros_like(p), None, 0
    for g in gradients:
        for _ in range(count):
            d_p = g + weight_decay * p
            if kind == "adam":
                state_step += 1
                m = 0.9 * m + 0.1 * d_p
                v = 0.999 * v + 0.001 * d_p ** 2
                denom = np.sqrt(v) / np.sqrt(1 - 0.999 ** state_step) + 1e-8
                p = p - lr / (1 - 0.9 ** state_step) * m / denom
            else:
                buffer = d_p.copy() if buffer is None else momentum * buffer + d_p
                p = p - lr * buffer
    return p


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_repeated_updates_equal_k_pytorch_updates_of_the_same_gradient(kind):
    """`repeat_updates`: three steps on variables listed 1, 3 and 4 times (one also at a 0.1
    learning-rate factor) against PyTorch 1.4's loop over duplicated parameters in numpy."""
    rng = np.random.default_rng(5)
    lr, weight_decay = 1e-2, (0.0 if kind == "adam" else 0.05)
    counts, factors = [1, 3, 4, 3], [1.0, 1.0, 1.0, 0.1]
    initial = [rng.normal(size=(4, 3)).astype(np.float32) for _ in counts]
    variables = [tf.Variable(value) for value in initial]
    optimizer = optim.build_optimizer(kind, lr, sgd_momentum=0.9)
    optimizer.build(variables)
    optimizer.scale_learning_rate([variables[3]], 0.1)
    optimizer.repeat_updates(list(zip(variables, counts)), coupled_weight_decay=weight_decay)
    gradients = [[rng.normal(size=(4, 3)).astype(np.float32) for _ in counts] for _ in range(3)]
    for step_gradients in gradients:
        # The trainer adds the coupled decay (SGD's L2) to the gradient once, from the step's weights.
        optimizer.apply_gradients([(tf.constant(g) + weight_decay * v, v)
                                   for g, v in zip(step_gradients, variables)])
    for index, (variable, count, factor) in enumerate(zip(variables, counts, factors)):
        expected = _pytorch14_repeated_steps(kind, initial[index], [g[index] for g in gradients],
                                             count, lr * factor, weight_decay=weight_decay)
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5, atol=1e-6,
                                   err_msg=f"listed {count} times, lr factor {factor}")
    moved = [np.abs(v.numpy() - i).mean() for v, i in zip(variables, initial)]
    assert moved[1] > 2 * moved[0] and moved[2] > moved[1], moved   # k copies move it further


def test_adam_steps_as_pytorch_where_gradients_are_near_epsilon():
    """PyTorch adds epsilon after the bias correction, Keras before: with gradients of 1e-9 to 1e-7
    the two rules move a weight by visibly different amounts in the first steps. Ours is PyTorch's
    (the numpy loop above, listed once)."""
    gradients = [np.array([1e-9, 3e-8, 1e-7, 1.0], np.float32) * sign for sign in (1, -1, 1, 1)]
    variable = tf.Variable(np.zeros(4, np.float32))
    optimizer = optim.build_optimizer("adam", 1e-2)
    optimizer.build([variable])
    for g in gradients:
        optimizer.apply_gradients([(tf.constant(g), variable)])
    expected = _pytorch14_repeated_steps("adam", np.zeros(4), gradients, 1, 1e-2)
    np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5, atol=1e-9)
    # Keras's own rule, to show that the case separates them: its first step of the 1e-9 gradient
    # is 31.6x smaller.
    keras_adam = keras.optimizers.Adam(1e-2, epsilon=1e-8)
    other = tf.Variable(np.zeros(4, np.float32))
    keras_adam.apply_gradients([(tf.constant(gradients[0]), other)])
    assert abs(other.numpy()[0]) < 0.2 * abs(_pytorch14_repeated_steps(
        "adam", np.zeros(4), gradients[:1], 1, 1e-2)[0])


# --- the layers, each against a formula ---------------------------------------------------------

def test_align_corners_resize_matches_the_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 5, 7, 2)).astype(np.float32)
    out = layers.ResizeLike(align_corners=True)([x, tf.zeros((1, 13, 9, 1))]).numpy()

    def sample(size_in, size_out):  # source = target * (in - 1) / (out - 1)
        pos = np.arange(size_out) * (size_in - 1) / (size_out - 1)
        low = np.minimum(np.floor(pos).astype(int), size_in - 2)
        return low, pos - low
    (ylo, yf), (xlo, xf) = sample(5, 13), sample(7, 9)
    top = x[0, ylo][:, xlo] * (1 - xf)[None, :, None] + x[0, ylo][:, xlo + 1] * xf[None, :, None]
    bottom = (x[0, ylo + 1][:, xlo] * (1 - xf)[None, :, None]
              + x[0, ylo + 1][:, xlo + 1] * xf[None, :, None])
    expected = top * (1 - yf)[:, None, None] + bottom * yf[:, None, None]
    np.testing.assert_allclose(out[0], expected, atol=1e-5)
    # The corners are exactly the input's corners.
    np.testing.assert_allclose(out[0, [0, 0, -1, -1], [0, -1, 0, -1]], x[0, [0, 0, -1, -1], [0, -1, 0, -1]],
                               atol=1e-6)


@pytest.mark.parametrize("size,ceil_mode,expected_size", [(160, True, 81), (160, False, 80),
                                                           (161, True, 81), (161, False, 81)])
def test_torch_max_pool_sizes_and_values(size, ceil_mode, expected_size):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, size, 3, 1)).astype(np.float32)
    out = layers.MaxPoolTorch(3, 2, 1, ceil_mode=ceil_mode)(x).numpy()
    assert out.shape[1] == expected_size
    for i in range(expected_size):   # window rows 2i-1 .. 2i+1, clipped to the image
        rows = x[0, max(2 * i - 1, 0):min(2 * i + 2, size)]
        for j in range(out.shape[2]):
            np.testing.assert_allclose(out[0, i, j, 0], rows[:, max(2 * j - 1, 0):2 * j + 2].max())


def test_adaptive_average_pool_matches_pytorch_bins():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 13, 10, 3)).astype(np.float32)
    for bins in (1, 2, 3, 6):
        out = layers.AdaptiveAveragePool(bins)(x).numpy()
        for i in range(bins):
            r0, r1 = (i * 13) // bins, -(-(i + 1) * 13 // bins)
            for j in range(bins):
                c0, c1 = (j * 10) // bins, -(-(j + 1) * 10 // bins)
                np.testing.assert_allclose(out[:, i, j], x[:, r0:r1, c0:c1].mean(axis=(1, 2)),
                                           atol=1e-5)


def test_pad_to_multiple_is_centred_and_crop_undoes_it():
    x = tf.reshape(tf.range(1 * 33 * 30 * 1, dtype=tf.float32), (1, 33, 30, 1)) + 1
    padded = layers.PadToMultiple(32)(x)
    assert padded.shape == (1, 64, 32, 1)
    # 31 rows of padding: 15 above, 16 below; 2 columns: 1 each side.
    assert float(tf.reduce_sum(padded[:, :15])) == 0 and float(tf.reduce_sum(padded[:, 15])) > 0
    assert float(tf.reduce_sum(padded[:, 48:])) == 0 and float(tf.reduce_sum(padded[:, 47])) > 0
    np.testing.assert_array_equal(layers.CropLike()([padded, x]).numpy(), x.numpy())


@pytest.mark.parametrize("dilation", [3, 12])
def test_dilated_convolution_matches_a_numpy_sum_and_keras_conv2d(dilation):
    """`layers.DilatedConv2D` (the conv2d op with `dilations`) against the definition
    y[h, w] = b + sum_ij x[h + (i - 1) d, w + (j - 1) d] K[i, j] (zero outside), and against Keras's
    Conv2D (SpaceToBatchND) with the same weights, outputs and gradients, on a map smaller than
    the dilation's reach."""
    rng = np.random.RandomState(dilation)
    x = rng.normal(size=(2, 9, 11, 3)).astype(np.float32)
    conv = layers.DilatedConv2D(4, 3, dilation_rate=dilation, padding="same")
    plain = keras.layers.Conv2D(4, 3, dilation_rate=dilation, padding="same")
    conv.build(x.shape)
    plain.build(x.shape)
    for a, b in zip(plain.weights, conv.weights):
        a.assign(b)
    kernel, bias = (w.numpy() for w in conv.weights)
    padded = np.pad(x, [(0, 0), (dilation, dilation), (dilation, dilation), (0, 0)])
    expected = np.zeros((2, 9, 11, 4), np.float32) + bias
    for i in range(3):
        for j in range(3):
            window = padded[:, i * dilation:i * dilation + 9, j * dilation:j * dilation + 11]
            expected += window @ kernel[i, j]
    inputs = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        y, y_plain = conv(inputs), plain(inputs)
        loss, loss_plain = tf.reduce_sum(y ** 2), tf.reduce_sum(y_plain ** 2)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y.numpy(), y_plain.numpy(), rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(tape.gradient(loss, [inputs] + conv.weights),
                            tape.gradient(loss_plain, [inputs] + plain.weights)):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-4)


def test_large_dilations_use_the_native_convolution():
    deeplab3 = models.build("deeplab3plus_small", 3)
    native = {layer.name for layer in deeplab3._flatten_layers() if isinstance(layer, layers.DilatedConv2D)}
    assert native == {"aspp_d12_conv", "aspp_d24_conv", "aspp_d36_conv"}


@pytest.mark.parametrize("mode", [layers.BN_TRAIN, layers.BN_FIXED_AFFINE])
def test_batch_norm_running_variance_is_pytorchs_unbiased_one(mode):
    """PyTorch: normalise with the biased batch variance, update the running variance with the
    unbiased one (n / (n - 1)); at n = 10 (a 1x1 pooled branch at batch 10) they differ by 11%."""
    rng = np.random.default_rng(2)
    for shape in [(10, 1, 1, 4), (3, 5, 2, 4)]:
        x = rng.normal(2.0, 3.0, size=shape).astype(np.float32)
        bn = layers.batch_norm("bn", mode)
        bn.build(shape)
        gamma = rng.uniform(0.5, 2.0, size=4).astype(np.float32)
        if mode == layers.BN_TRAIN:
            bn.gamma.assign(gamma)
        else:
            gamma = np.ones(4, np.float32)
        bn.moving_variance.assign(np.full(4, 2.0, np.float32))
        out = bn(x, training=True).numpy()
        flat = x.reshape(-1, 4).astype(np.float64)
        np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * flat.mean(0), rtol=1e-5)
        np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 * 2.0 + 0.1 * flat.var(0, ddof=1),
                                   rtol=1e-5)
        expected = (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5) * gamma
        np.testing.assert_allclose(out.reshape(-1, 4), expected, rtol=1e-4, atol=1e-5)
    # In inference mode the moving statistics normalise and nothing is updated.
    before = bn.moving_variance.numpy()
    out = bn(x, training=False).numpy()
    np.testing.assert_allclose(out.reshape(-1, 4), (flat - bn.moving_mean.numpy())
                               / np.sqrt(before + 1e-5) * gamma, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(bn.moving_variance.numpy(), before)
