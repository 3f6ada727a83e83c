"""DenseNet feature extractors with torchvision's layout and layer names (keras.applications has no
DenseNet-161, and its DenseNets name and order layers differently).

DenseNet-161: growth 48, blocks (6, 12, 36, 24), 96 initial features, bottleneck width 4 x growth,
compression 0.5. Names are torchvision's module paths without `features.`, '.' as '_'
(`denseblock3_denselayer7_conv2`, `transition2_norm`, `norm5`). The model, named "backbone", returns a
dict of the maps the Dense U-net taps: `stem` (after relu0, stride 2), `block1`..`block3`
(the outputs of dense blocks 1-3, entering transitions 1-3, strides 4-16) and `out` (ReLU(norm5),
stride 32).
"""
import keras

from semiseg_tf.models import layers

BOTTLENECK_WIDTH = 4


def _dense_layer(x, growth, name, bn_mode, kernel_init):
    y = layers.batch_norm(f"{name}_norm1", bn_mode)(x)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.conv(y, BOTTLENECK_WIDTH * growth, 1, f"{name}_conv1", kernel_initializer=kernel_init)
    y = layers.batch_norm(f"{name}_norm2", bn_mode)(y)
    y = keras.layers.ReLU(name=f"{name}_relu2")(y)
    y = layers.conv(y, growth, 3, f"{name}_conv2", kernel_initializer=kernel_init)
    return keras.layers.Concatenate(name=f"{name}_concat")([x, y])


def densenet(growth=48, blocks=(6, 12, 36, 24), init_features=96, bn_mode=layers.BN_TRAIN,
             name="backbone"):
    """A DenseNet feature extractor; the defaults are DenseNet-161.

    Args:
      growth: channels each dense layer adds.
      blocks: dense layers per block.
      init_features: channels of the 7x7 stem.
      bn_mode: batch-norm behaviour, one of `layers.BN_MODES`.
    """
    kernel_init = layers.kaiming_normal("fan_in")  # torchvision's DenseNet init
    inputs = layers.image_input()
    x = layers.conv(inputs, init_features, 7, "conv0", stride=2, kernel_initializer=kernel_init)
    x = layers.batch_norm("norm0", bn_mode)(x)
    x = keras.layers.ReLU(name="relu0")(x)
    features = {"stem": x}
    x = layers.MaxPoolTorch(3, 2, 1, name="pool0")(x)
    for block, count in enumerate(blocks, 1):
        for index in range(1, count + 1):
            x = _dense_layer(x, growth, f"denseblock{block}_denselayer{index}", bn_mode, kernel_init)
        if block == len(blocks):
            break
        features[f"block{block}"] = x
        name_t = f"transition{block}"
        x = layers.batch_norm(f"{name_t}_norm", bn_mode)(x)
        x = keras.layers.ReLU(name=f"{name_t}_relu")(x)
        compressed = x.shape[-1] // 2  # compression 0.5
        x = layers.conv(x, compressed, 1, f"{name_t}_conv", kernel_initializer=kernel_init)
        x = keras.layers.AveragePooling2D(2, name=f"{name_t}_pool")(x)
    x = layers.batch_norm("norm5", bn_mode)(x)
    features["out"] = keras.layers.ReLU(name="relu5")(x)
    return keras.Model(inputs, features, name=name)

