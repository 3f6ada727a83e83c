"""ResNet backbones in the three layouts the paper's networks use, with torchvision's layer names.

- `caffe` (DeepLab v2, after Hung et al.): 7x7 stem, max-pool in ceil mode, the stride on the first 1x1
  conv of a block, every block of a dilated stage at its full dilation.
- `torchvision` (DeepLab v3+): 7x7 stem, the stride on the 3x3 conv, and
  `replace_stride_with_dilation`: the first block of a dilated stage keeps the previous dilation.
- `deep_stem` (PSPNet, MIT CSAIL `resnet101dilated`): three 3x3 convs (64, 64, 128) as the stem, then
  as `torchvision` (MIT's `_nostride_dilate` gives the same dilations).

Layer names are the PyTorch module paths with '.' as '_' (`layer3_5_conv2`, `layer1_0_downsample_0`),
so torchvision state dicts convert by name (`weights.py`). The backbone is its own Keras model named
"backbone" whose outputs are a dict of feature maps: `stem` (after the stem's last ReLU, stride 2) and
`layer1`..`layer4`.
"""
import keras

from semiseg_tf.models import layers

LAYOUTS = ("caffe", "torchvision", "deep_stem")
RESNET101_BLOCKS = (3, 4, 23, 3)
EXPANSION = 4


def _stage_dilations(output_stride):
    """(stride, dilation) of stages 3 and 4 for an output stride of 8, 16 or 32."""
    if output_stride == 8:
        return [(1, 2), (1, 4)]
    if output_stride == 16:
        return [(2, 1), (1, 2)]
    if output_stride == 32:
        return [(2, 1), (2, 1)]
    raise ValueError(f"output stride must be 8, 16 or 32, not {output_stride}")


def _bottleneck(x, planes, stride, dilation, name, layout, bn_mode, kernel_init, downsample):
    stride_1x1, stride_3x3 = (stride, 1) if layout == "caffe" else (1, stride)
    shortcut = x
    y = layers.conv(x, planes, 1, f"{name}_conv1", stride=stride_1x1, kernel_initializer=kernel_init)
    y = layers.batch_norm(f"{name}_bn1", bn_mode)(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.conv(y, planes, 3, f"{name}_conv2", stride=stride_3x3, dilation=dilation,
                    kernel_initializer=kernel_init)
    y = layers.batch_norm(f"{name}_bn2", bn_mode)(y)
    y = keras.layers.ReLU(name=f"{name}_relu2")(y)
    y = layers.conv(y, planes * EXPANSION, 1, f"{name}_conv3", kernel_initializer=kernel_init)
    y = layers.batch_norm(f"{name}_bn3", bn_mode)(y)
    if downsample:
        shortcut = layers.conv(x, planes * EXPANSION, 1, f"{name}_downsample_0", stride=stride,
                               kernel_initializer=kernel_init)
        shortcut = layers.batch_norm(f"{name}_downsample_1", bn_mode)(shortcut)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def resnet(layout="torchvision", blocks=RESNET101_BLOCKS, width=64, output_stride=8,
           bn_mode=layers.BN_TRAIN, kernel_init=None, name="backbone"):
    """A ResNet feature extractor (bottleneck blocks) as a Keras model with dict outputs.

    Args:
      layout: one of `LAYOUTS` (module docstring).
      blocks: blocks per stage; (3, 4, 23, 3) is ResNet-101.
      width: channels of the stem and of stage 1's bottleneck (64 in ResNet-101; stages double it).
      output_stride: 8 or 16 dilate the last stages instead of striding (32: the classifier ResNet).
      bn_mode: batch-norm behaviour, one of `layers.BN_MODES`.
      kernel_init: initialiser of every conv (default torchvision's kaiming normal, fan_out).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"ResNet layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    kernel_init = kernel_init or layers.kaiming_normal("fan_out")
    late_stages = _stage_dilations(output_stride)
    inputs = layers.image_input()
    if layout == "deep_stem":
        x = inputs
        for index, (channels, stride) in enumerate([(width, 2), (width, 1), (2 * width, 1)], 1):
            x = layers.conv(x, channels, 3, f"conv{index}", stride=stride, kernel_initializer=kernel_init)
            x = layers.batch_norm(f"bn{index}", bn_mode)(x)
            x = keras.layers.ReLU(name=f"relu{index}")(x)
        in_channels = 2 * width
    else:
        x = layers.conv(inputs, width, 7, "conv1", stride=2, kernel_initializer=kernel_init)
        x = layers.batch_norm("bn1", bn_mode)(x)
        x = keras.layers.ReLU(name="relu")(x)
        in_channels = width
    features = {"stem": x}
    x = layers.MaxPoolTorch(3, 2, 1, ceil_mode=layout == "caffe", name="maxpool")(x)

    dilation = 1
    stage_settings = [(1, 1)] + [(2, 1)] + late_stages
    for stage, ((stride, stage_dilation), count) in enumerate(zip(stage_settings, blocks), 1):
        planes = width * 2 ** (stage - 1)
        # torchvision's replace_stride_with_dilation: the first block keeps the previous dilation.
        first_dilation = stage_dilation if layout == "caffe" else dilation
        for block in range(count):
            x = _bottleneck(
                x, planes, stride if block == 0 else 1, first_dilation if block == 0 else stage_dilation,
                f"layer{stage}_{block}", layout, bn_mode, kernel_init,
                downsample=block == 0 and (stride != 1 or in_channels != planes * EXPANSION))
            in_channels = planes * EXPANSION
        dilation = stage_dilation
        features[f"layer{stage}"] = x
    return keras.Model(inputs, features, name=name)

