"""Pretrained weights from local files: keras.applications ResNet-101, torchvision/MIT state dicts
through the converter, and the errors a wrong file gets. The oracles are the source networks
themselves (keras.applications' ResNet101; torchvision's ResNet-101 and DenseNet-161, built by torch
from `torch_reference`) run on the same image."""
import os
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

from semiseg_tf import models
from semiseg_tf.models import convert_torchvision, densenet, layers, resnet, weights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def _randomise(variables, rng):
    """Weights with realistic scales and non-trivial batch-norm statistics."""
    for v in variables:
        name = v.path.split("/")[-1]
        if name in ("gamma", "moving_variance"):
            value = rng.uniform(0.5, 1.5, v.shape)
        elif name == "kernel":
            value = rng.normal(0, np.sqrt(1.0 / np.prod(v.shape[:-1])), v.shape)
        else:
            value = rng.normal(0, 0.1, v.shape)
        v.assign(value.astype(np.float32))


def _wrap(backbone, output):
    """A network whose pretrained part is `backbone`, returning one of its feature maps."""
    inputs = keras.Input((None, None, 3))
    return keras.Model(inputs, backbone(inputs)[output], name="net")


@pytest.fixture(scope="module")
def keras_applications_file(tmp_path_factory):
    """A keras.applications ResNet-101 with random weights and the weight file keras writes for it."""
    from keras.src.legacy.saving import legacy_h5_format
    network = keras.applications.ResNet101(weights=None, include_top=False,
                                            input_shape=(None, None, 3))
    _randomise(network.weights, np.random.default_rng(0))
    path = str(tmp_path_factory.mktemp("weights") / "resnet101_notop.h5")
    with h5py.File(path, "w") as f:  # keras's own writer of the keras.applications layout
        legacy_h5_format.save_weights_to_hdf5_group(f, network)
    return network, path


def test_keras_applications_resnet101_gives_the_same_features(keras_applications_file):
    reference, path = keras_applications_file
    # With the Caffe mean as our mean the padding means the same colour in both, so the fold of the
    # input normalisation and of every conv bias must be exact.
    mean = np.array(weights.CAFFE_MEAN_BGR[::-1]) / 255
    net = _wrap(resnet.resnet("caffe", output_stride=32, bn_mode=layers.BN_FROZEN), "layer4")
    assert weights.load_backbone_weights(net, path, mean, IMAGENET_STD) == 208  # 104 convs, 104 BNs
    rgb = np.random.default_rng(1).uniform(0, 1, (2, 66, 98, 3))   # odd stem size: ceil = floor
    ours = net(((rgb - mean) / IMAGENET_STD).astype(np.float32)).numpy()
    caffe_input = (255 * rgb)[..., ::-1] - np.array(weights.CAFFE_MEAN_BGR)
    expected = reference(caffe_input.astype(np.float32)).numpy()
    assert ours.shape == expected.shape == (2, 3, 4, 2048)
    assert np.abs(ours - expected).max() <= 1e-5 * np.abs(expected).max()


def test_keras_applications_weights_load_into_dilated_deeplab(keras_applications_file):
    reference, path = keras_applications_file
    network = models.build("deeplab2_resnet101", 21)
    weights.load_backbone_weights(network, path, (0.485, 0.456, 0.406), IMAGENET_STD)
    backbone = models.backbone_of(network)
    # conv4_block7_2_conv is stage 3's seventh block's 3x3 conv; Keras's has a bias, folded away.
    np.testing.assert_array_equal(backbone.get_layer("layer3_6_conv2").kernel.numpy(),
                                  reference.get_layer("conv4_block7_2_conv").kernel.numpy())
    keras_bn = reference.get_layer("conv4_block7_2_bn")
    np.testing.assert_allclose(
        backbone.get_layer("layer3_6_bn2").moving_mean.numpy(),
        keras_bn.moving_mean.numpy() - reference.get_layer("conv4_block7_2_conv").bias.numpy(),
        rtol=1e-6, atol=1e-6)


def test_keras_applications_weights_fold_imagenet_then_spread_over_four_bands(
        keras_applications_file):
    _, path = keras_applications_file
    network = models.build("deeplab2_resnet101", 21, bands=4)
    weights.load_backbone_weights(network, path, (0.3,) * 4, (0.1,) * 4)
    rgb = weights.from_keras_applications_resnet(weights.read_weight_file(path),
                                                  (0.485, 0.456, 0.406), IMAGENET_STD)["conv1"]
    conv1 = models.backbone_of(network).get_layer("conv1")
    np.testing.assert_allclose(conv1.kernel.numpy(), weights.adapt_rgb_kernel(rgb["kernel"], 4),
                               rtol=1e-6)


def test_wrong_weight_files_get_errors_naming_file_and_layer(keras_applications_file, tmp_path):
    _, path = keras_applications_file
    mean = (0.485, 0.456, 0.406)
    with pytest.raises(weights.WeightsError, match="no such weights file"):
        weights.load_backbone_weights(models.build("deeplab2_small", 3), str(tmp_path / "x.h5"),
                                      mean, IMAGENET_STD)
    not_h5 = tmp_path / "notes.h5"
    not_h5.write_text("not weights")
    with pytest.raises(weights.WeightsError, match="notes.h5: cannot read as HDF5"):
        weights.load_backbone_weights(models.build("deeplab2_small", 3), str(not_h5), mean,
                                      IMAGENET_STD)
    # A ResNet-101 file into the small variant: shapes differ at the first conv.
    with pytest.raises(weights.WeightsError, match=r"layer 'conv1' kernel has shape \(7, 7, 3, 64\) "
                                                   r"in the file, \(7, 7, 3, 8\)"):
        weights.load_backbone_weights(models.build("deeplab2_small", 3), path, mean, IMAGENET_STD)
    # A ResNet-101 file into a DenseNet: its first layer is missing.
    with pytest.raises(weights.WeightsError, match="no weights for layer 'conv0'"):
        weights.load_backbone_weights(models.build("dense_unet_small", 2), path, mean, IMAGENET_STD)
    # A network with no backbone.
    with pytest.raises(weights.WeightsError, match="has no pretrained backbone"):
        weights.load_backbone_weights(models.build("tiny_unet", 2), path, mean, IMAGENET_STD)


def test_converter_maps_torch_names_and_layouts():
    rng = np.random.default_rng(2)
    state = {
        "conv1.weight": rng.normal(size=(8, 3, 7, 5)),
        "bn1.weight": rng.normal(size=8), "bn1.bias": rng.normal(size=8),
        "bn1.running_mean": rng.normal(size=8), "bn1.running_var": rng.uniform(size=8),
        "bn1.num_batches_tracked": np.array(3),
        "layer2.0.downsample.0.weight": rng.normal(size=(16, 8, 1, 1)),
        "features.denseblock1.denselayer2.norm.1.weight": rng.normal(size=4),
        "features.denseblock1.denselayer2.norm.1.bias": rng.normal(size=4),
        "features.denseblock1.denselayer2.norm.1.running_mean": rng.normal(size=4),
        "features.denseblock1.denselayer2.norm.1.running_var": rng.uniform(size=4),
        "module.line0_conv.weight": rng.normal(size=(6, 4, 1, 1)),
        "module.line0_conv.bias": rng.normal(size=6),
        "fc.weight": rng.normal(size=(10, 8)), "classifier.bias": rng.normal(size=10),
    }
    converted = convert_torchvision.convert_state_dict(state)
    assert set(converted) == {"conv1", "bn1", "layer2_0_downsample_0",
                              "denseblock1_denselayer2_norm1", "line0_conv"}
    # [out, in, h, w] -> [h, w, in, out]: element (o, i, y, x) lands at (y, x, i, o).
    assert converted["conv1"]["kernel"].shape == (7, 5, 3, 8)
    assert converted["conv1"]["kernel"][6, 4, 2, 7] == np.float32(state["conv1.weight"][7, 2, 6, 4])
    np.testing.assert_array_equal(converted["bn1"]["moving_variance"],
                                  state["bn1.running_var"].astype(np.float32))
    np.testing.assert_array_equal(converted["denseblock1_denselayer2_norm1"]["gamma"],
                                  state["features.denseblock1.denselayer2.norm.1.weight"]
                                  .astype(np.float32))
    assert set(converted["line0_conv"]) == {"kernel", "bias"}


def _torch():
    """torch and the reference networks (`torch_reference`: torchvision's, written out), or a skip
    that says why (torch is in the `test` extra; a bare environment may lack it)."""
    try:
        import torch
        import torch_reference
    except Exception as error:  # noqa: BLE001  (a broken install raises more than ImportError)
        pytest.skip(f"torch not usable here ({type(error).__name__}: {error}); "
                    "install with pip install -e '.[test]'")
    return torch, torch_reference


def _randomise_torch(module, torch, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, buffer in module.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.1)
            elif name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
        for name, parameter in module.named_parameters():
            if parameter.ndim == 1:  # batch-norm gamma/beta, biases
                parameter.copy_(torch.rand(parameter.shape, generator=generator) * 0.5 + (
                    0.75 if name.endswith("weight") else -0.25))
    module.eval()


def _torch_features(torch, function, images):
    with torch.no_grad():
        out = function(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
    return out.numpy().transpose(0, 2, 3, 1)


def test_converted_torchvision_resnet101_gives_the_same_features(tmp_path):
    torch, torch_reference = _torch()
    reference = torch_reference.ResNet()        # torchvision.models.resnet101()
    _randomise_torch(reference, torch, 0)
    pth = tmp_path / "resnet101.pth"
    torch.save(reference.state_dict(), pth)
    out = tmp_path / "resnet101.h5"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "semiseg_tf.models.convert_torchvision",
                           f"--input={pth}", f"--output={out}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wrote" in proc.stdout and os.path.exists(out) and not os.path.exists(f"{out}.partial")

    net = _wrap(resnet.resnet("torchvision", output_stride=32, bn_mode=layers.BN_FROZEN), "layer4")
    weights.load_backbone_weights(net, str(out), (0.485, 0.456, 0.406), IMAGENET_STD)
    images = np.random.default_rng(3).normal(size=(2, 64, 80, 3)).astype(np.float32)
    body = torch.nn.Sequential(*list(reference.children())[:-2])  # without avgpool and fc
    expected = _torch_features(torch, body, images)
    ours = net(images).numpy()
    assert ours.shape == expected.shape
    assert np.abs(expected).std() > 1e-2        # not a vanishing signal that any output matches
    assert np.abs(ours - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_converted_torchvision_densenet161_gives_the_same_features(tmp_path):
    torch, torch_reference = _torch()
    reference = torch_reference.DenseNet()      # torchvision.models.densenet161()
    _randomise_torch(reference, torch, 1)
    # The old file layout (`norm.1`), as in densenet161-8d451a50.pth.
    state = {k.replace("norm1", "norm.1").replace("conv2", "conv.2"): v.numpy()
             for k, v in reference.state_dict().items()}
    converted = convert_torchvision.convert_state_dict(state)
    path = str(tmp_path / "densenet161.h5")
    weights.write_weight_file(path, converted)
    net = _wrap(densenet.densenet(bn_mode=layers.BN_FROZEN), "out")
    weights.load_backbone_weights(net, path, (0.485, 0.456, 0.406), IMAGENET_STD)
    images = np.random.default_rng(4).normal(size=(1, 64, 96, 3)).astype(np.float32)
    expected = _torch_features(torch, lambda x: torch.relu(reference.features(x)), images)
    ours = net(images).numpy()
    assert ours.shape == expected.shape == (1, 2, 3, 2208)
    assert np.abs(expected).std() > 1e-2        # not a vanishing signal that any output matches
    assert np.abs(ours - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_rgb_filters_adapted_to_other_bands_by_the_stated_rule():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 3, 5))
    four = weights.adapt_rgb_kernel(kernel, 4)
    # R, G, B keep their filters, the fourth band (near infrared) gets their mean; all times 3/4.
    np.testing.assert_allclose(four[:, :, :3], kernel * 0.75)
    np.testing.assert_allclose(four[:, :, 3], kernel.mean(axis=2) * 0.75)
    np.testing.assert_allclose(weights.adapt_rgb_kernel(kernel, 1)[:, :, 0], kernel.sum(axis=2))
    # A chosen band order: bands 2, 1, 0 of a 5-band image are R, G, B.
    five = weights.adapt_rgb_kernel(kernel, 5, rgb_bands=(2, 1, 0))
    np.testing.assert_allclose(five[:, :, 2], kernel[:, :, 0] * 0.6)
    # A uniform image answers as the RGB image of the same value, whatever the band count.
    for bands in (1, 2, 4, 12):
        np.testing.assert_allclose(weights.adapt_rgb_kernel(kernel, bands).sum(axis=2),
                                   kernel.sum(axis=2))


def test_rgb_backbone_weights_load_into_a_four_band_network(tmp_path):
    rgb = models.build("deeplab3plus_small", 3)
    stored = {layer.name: {v.path.split("/")[-1]: v.numpy() for v in layer.weights}
              for layer in models.backbone_of(rgb).layers if layer.weights}
    path = str(tmp_path / "rgb.h5")
    weights.write_weight_file(path, stored)
    four = models.build("deeplab3plus_small", 3, bands=4)
    weights.load_backbone_weights(four, path, (0.5,) * 4, (0.25,) * 4)
    for layer in models.backbone_of(four).layers:
        for variable in layer.weights:
            value = stored[layer.name][variable.path.split("/")[-1]]
            if variable.shape != value.shape:       # the first convolution alone
                assert layer.name == "conv1"
                value = weights.adapt_rgb_kernel(value, 4)
            np.testing.assert_allclose(variable.numpy(), value, rtol=1e-6)
