"""The Dense U-net of the paper's ISIC 2017 experiments: DenseNet-161 encoder, additive skip decoder
(after H-DenseUNet).

Decoder blocks upsample x2 (nearest), add the encoder map of that stride and apply 3x3 conv-BN-ReLU
(2208 -> 768 -> 384 -> 96 -> 96 channels for DenseNet-161; a 1x1 conv first lifts the stride-16 map
from 2112 to 2208 channels); a last x2 upsampling, 3x3 conv to 64, dropout 0.3, BN, ReLU and a 1x1
classifier. The encoder needs sizes divisible by 32: inputs are zero-padded (the mean colour) to the
next multiple, centred as the authors pad evaluation batches, and the logits cropped back, so any size
works. Decoder layers start from PyTorch's default init.
"""
import keras

from semiseg_tf.models import densenet, layers

MULTIPLE = 32


def _decoder_block(x, skip, channels, name):
    x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_upsample")(x)
    x = keras.layers.Add(name=f"{name}_add")([x, skip])
    return layers.conv_bn_relu(x, channels, 3, name)


def dense_unet(num_classes, growth=48, blocks=(6, 12, 36, 24), init_features=96, final_channels=64,
               freeze_bn=True, name="dense_unet_densenet161"):
    """Args:
      num_classes: channels of the logits.
      growth, blocks, init_features: the DenseNet's size (`densenet.densenet`); defaults DenseNet-161.
      final_channels: channels of the last 3x3 conv (64).
      freeze_bn: encoder batch norm in inference mode, gamma/beta still trained (the authors'
        `freeze_batchnorm`; their ISIC recipes leave it off: `--nofreeze_bn`).
    """
    bn_mode = layers.BN_FROZEN_STATS if freeze_bn else layers.BN_TRAIN
    backbone = densenet.densenet(growth, blocks, init_features, bn_mode=bn_mode)
    inputs = layers.image_input()
    padded = layers.PadToMultiple(MULTIPLE, name="pad")(inputs)
    features = backbone(padded)
    channels = {name: feature.shape[-1] for name, feature in features.items()}
    stride16 = layers.conv(features["block3"], channels["out"], 1, "line0_conv", use_bias=True,
                           bias_initializer=layers.TorchBiasUniform(channels["block3"]))
    x = _decoder_block(features["out"], stride16, channels["block2"], "decoder16")
    x = _decoder_block(x, features["block2"], channels["block1"], "decoder8")
    x = _decoder_block(x, features["block1"], channels["stem"], "decoder4")
    x = _decoder_block(x, features["stem"], channels["stem"], "decoder2")
    x = keras.layers.UpSampling2D(2, interpolation="nearest", name="final_upsample")(x)
    x = layers.conv(x, final_channels, 3, "final_conv")
    x = keras.layers.Dropout(0.3, name="final_dropout")(x)
    x = layers.batch_norm("final_bn")(x)
    x = keras.layers.ReLU(name="final_relu")(x)
    logits = layers.conv(x, num_classes, 1, "classifier", use_bias=True,
                         bias_initializer=layers.TorchBiasUniform(final_channels))
    logits = layers.CropLike(name="crop")([logits, inputs])
    return keras.Model(inputs, logits, name=name)


def build_dense_unet_densenet161(num_classes, freeze_bn=True):
    return dense_unet(num_classes, freeze_bn=freeze_bn)


def build_dense_unet_small(num_classes, freeze_bn=True):
    """The same code at a CPU-test size: growth 8, two layers per block, 16 initial features."""
    return dense_unet(num_classes, growth=8, blocks=(2, 2, 2, 2), init_features=16, final_channels=16,
                      freeze_bn=freeze_bn, name="dense_unet_small")
