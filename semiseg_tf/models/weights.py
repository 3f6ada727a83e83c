"""Pretrained backbone weights from local files (nothing is downloaded).

Two kinds of file, both in Keras's HDF5 weight layout (one group per layer, `weight_names` listing
`layer/variable:0` datasets, as keras.applications ships them):
- keras.applications ResNet-101 weights (`resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5`),
  whose layer names (`conv4_block7_2_conv`) are mapped to torchvision's (`layer3_6_conv2`). Those
  weights come from Caffe: they expect BGR input in 0-255 minus a mean, and every conv has a bias. The
  loader folds both away exactly: the input normalisation into conv1's kernel and bias, and each conv's
  bias into the moving mean of the batch norm after it (BN(conv + b) = BN'(conv) with mean - b). The
  only difference left is at the image border, where the zero padding stands for our mean colour
  instead of Caffe's (under 0.5 of 255 per channel).
- Files written by `convert_torchvision` (torchvision or MIT CSAIL state dicts), already in our names.
Every layer of the backbone must be in the file with the right shapes, or loading stops with an error
naming the file and the layer; layers of the file that the backbone lacks (a classifier) are ignored.
A network for images of other than 3 bands takes the RGB weights with its first convolution adapted
by `adapt_rgb_kernel`.
"""
import os
import re

import h5py
import numpy as np

from semiseg_tf.data import base
from semiseg_tf.errors import WeightsError
from semiseg_tf.models import layers, registry

# keras.applications' `preprocess_input(mode="caffe")`: BGR order, this mean subtracted, no scaling.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
KERAS_APPLICATIONS_BN_EPSILON = 1.001e-5

_KERAS_RESNET_NAME = re.compile(r"^conv(\d)_block(\d+)_(\d)_(conv|bn)$")


def read_weight_file(path):
    """{layer name: {variable name: array}} of a Keras HDF5 weight file (legacy layout)."""
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such weights file")
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f  # a whole saved model
            if "layer_names" not in root.attrs:
                raise WeightsError(f"{path}: not a Keras HDF5 weight file (no 'layer_names')")
            result = {}
            for layer_name in root.attrs["layer_names"]:
                layer_name = _text(layer_name)
                group = root[layer_name]
                variables = {}
                for weight_name in group.attrs.get("weight_names", []):
                    weight_name = _text(weight_name)
                    short = weight_name.split("/")[-1].split(":")[0]
                    variables[short] = np.asarray(group[weight_name])
                if variables:
                    result[layer_name] = variables
            return result
    except OSError as error:
        raise WeightsError(f"{path}: cannot read as HDF5 ({error})") from None


def write_weight_file(path, weights):
    """Writes {layer: {variable: array}} in the layout `read_weight_file` reads, atomically."""
    partial = f"{path}.partial"
    with h5py.File(partial, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in weights]
        f.attrs["backend"] = b"tensorflow"
        for layer_name, variables in weights.items():
            group = f.create_group(layer_name)
            names = [f"{layer_name}/{var}:0" for var in variables]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for name, value in zip(names, variables.values()):
                group.create_dataset(name, data=np.asarray(value, np.float32))
    os.replace(partial, path)


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def is_keras_applications_resnet(weights):
    return "conv1_conv" in weights and any(_KERAS_RESNET_NAME.match(n) for n in weights)


def from_keras_applications_resnet(weights, rgb_mean, rgb_std, epsilon=layers.BN_EPSILON):
    """Maps keras.applications ResNet weights to torchvision names, folding away biases and Caffe input.

    Args:
      weights: {layer: {variable: array}} as read from the file.
      rgb_mean, rgb_std: our input normalisation, (rgb / 255 - mean) / std, RGB order.
      epsilon: our batch norm's epsilon (the file's is 1.001e-5; the variance absorbs the difference).
    """
    mapped = {}
    for name, variables in weights.items():
        if not name.endswith("_conv") or _torchvision_name(name) is None:
            continue  # batch norms are handled with their conv; the classifier is dropped
        kernel = np.asarray(variables["kernel"], np.float64)
        bias = np.asarray(variables.get("bias", np.zeros(kernel.shape[-1])), np.float64)
        if name == "conv1_conv":
            kernel, bias = _fold_caffe_input(kernel, bias, rgb_mean, rgb_std)
        mapped[_torchvision_name(name)] = {"kernel": kernel}
        # Every Keras conv is followed by its batch norm: BN(conv + b) is BN'(conv) with mean - b.
        bn_name = name[:-len("conv")] + "bn"
        bn = {k: np.asarray(v, np.float64) for k, v in weights[bn_name].items()}
        bn["moving_mean"] = bn["moving_mean"] - bias
        bn["moving_variance"] = bn["moving_variance"] + KERAS_APPLICATIONS_BN_EPSILON - epsilon
        mapped[_torchvision_name(bn_name)] = bn
    return mapped


def _torchvision_name(keras_name):
    """`conv4_block7_2_conv` -> `layer3_6_conv2`, `conv2_block1_0_bn` -> `layer1_0_downsample_1`."""
    if keras_name in ("conv1_conv", "conv1_bn"):
        return "conv1" if keras_name == "conv1_conv" else "bn1"
    match = _KERAS_RESNET_NAME.match(keras_name)
    if not match:
        return None
    stage, block, index, kind = match.groups()
    prefix = f"layer{int(stage) - 1}_{int(block) - 1}"
    if index == "0":
        return f"{prefix}_downsample_{0 if kind == 'conv' else 1}"
    return f"{prefix}_{kind}{index}"


def _fold_caffe_input(kernel, bias, rgb_mean, rgb_std):
    """conv1 on Caffe input (BGR, 255 * rgb - mean) rewritten for our input (rgb / 255 - mean) / std.

    Caffe's channel 2 - c is 255 std_c z_c + (255 mean_c - caffe_mean_c) for our channel c and value z.
    """
    caffe_mean_rgb = np.asarray(CAFFE_MEAN_BGR[::-1], np.float64)
    mean, std = np.asarray(rgb_mean, np.float64), np.asarray(rgb_std, np.float64)
    kernel_rgb = kernel[:, :, ::-1, :]
    offset = 255.0 * mean - caffe_mean_rgb
    new_bias = bias + np.einsum("hwco,c->o", kernel_rgb, offset)
    return kernel_rgb * (255.0 * std)[None, None, :, None], new_bias


def adapt_rgb_kernel(kernel, bands, rgb_bands=None):
    """An RGB first-layer kernel [kh, kw, 3, out] made for images of `bands` channels.

    The bands listed in `rgb_bands` (the image's red, green and blue bands, in that order; by
    default the first three when there are three or more) keep the red, green and blue filters;
    every other band gets the mean of the three. All are then scaled by 3 / bands, so that an image
    whose bands all hold one value v gives the layer the response an RGB image of v gives it: a
    one-band image (grey, medical) gets the sum of the RGB filters, as an RGB image of that grey.
    """
    kernel = np.asarray(kernel, np.float64)
    if rgb_bands is None:
        rgb_bands = (0, 1, 2) if bands >= 3 else ()
    adapted = np.repeat(kernel.mean(axis=2, keepdims=True), bands, axis=2)
    for colour, band in enumerate(rgb_bands):
        adapted[:, :, band] = kernel[:, :, colour]
    return adapted * (3.0 / bands)


def load_backbone_weights(network, path, rgb_mean, rgb_std, kind="file"):
    """Loads a weights file into `network`'s backbone (see the module docstring); returns the count of
    layers loaded. Raises `WeightsError` naming the file and the first layer that does not fit.
    `kind`: the network's catalog `weights`; "folder" hands `path` to the backbone's own
    `load_pretrained(path)` (DINOv2's reads Hugging Face and keras-hub folders)."""
    backbone = registry.backbone_of(network)
    if backbone is None:
        raise WeightsError(f"{path}: network {network.name} has no pretrained "
                           "backbone to load")
    if kind == "folder":
        return backbone.load_pretrained(path)
    weights = read_weight_file(path)
    if is_keras_applications_resnet(weights):
        if len(rgb_mean) != 3:
            # Images of other bands: folded for ImageNet's standardised colours, which their
            # standardised bands take the place of before the filters are spread over them.
            rgb_mean, rgb_std = base.IMAGENET_MEAN, base.IMAGENET_STD
        weights = from_keras_applications_resnet(weights, rgb_mean, rgb_std)
    loaded = 0
    for layer in backbone.layers:
        if not layer.weights:
            continue
        if layer.name not in weights:
            raise WeightsError(f"{path}: no weights for layer {layer.name!r} of {network.name}'s "
                               f"backbone (is it the file for this network?)")
        stored = weights[layer.name]
        values = []
        for variable in layer.weights:
            short = variable.path.split("/")[-1]
            if short not in stored:
                raise WeightsError(f"{path}: layer {layer.name!r} has no {short!r} in the file")
            value = stored[short]
            shape = tuple(variable.shape)
            if (short == "kernel" and value.ndim == 4 and value.shape[2] == 3 and shape[2] != 3
                    and value.shape[:2] + value.shape[3:] == shape[:2] + shape[3:]):
                # The first convolution of a network for images of other than 3 bands.
                value = adapt_rgb_kernel(value, variable.shape[2])
            if tuple(value.shape) != tuple(variable.shape):
                raise WeightsError(
                    f"{path}: layer {layer.name!r} {short} has shape {tuple(value.shape)} in the file, "
                    f"{tuple(variable.shape)} in {network.name}")
            values.append(value)
        for variable, value in zip(layer.weights, values):
            variable.assign(value.astype(np.float32))
        loaded += 1
    return loaded
