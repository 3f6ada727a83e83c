"""PSPNet on the MIT CSAIL dilated ResNet-101 with its deep stem, no auxiliary loss.

Pyramid pooling of the stride-8 features into 1x1, 2x2, 3x3 and 6x6 bins (PyTorch's adaptive average
pooling), each 1x1 conv-BN-ReLU and bilinearly upsampled back; joined with the features, then 3x3
conv-BN-ReLU, spatial dropout 0.1, a 1x1 classifier and a bilinear upsampling to the input size.
Decoder convs start from kaiming normal and its batch norms with beta 1e-4, as the authors'.
"""
import keras

from semiseg_tf.models import layers, resnet

POOL_BINS = (1, 2, 3, 6)


def _conv_bn_relu(x, channels, kernel, name):
    return layers.conv_bn_relu(x, channels, kernel, name, kernel_initializer=layers.kaiming_normal(),
                               beta_initializer=keras.initializers.Constant(1e-4))


def pspnet(num_classes, blocks=resnet.RESNET101_BLOCKS, width=64, pool_channels=512,
           decoder_channels=512, freeze_bn=True, name="pspnet_resnet101"):
    """Args:
      num_classes: channels of the logits.
      blocks, width: the ResNet's size (`resnet.resnet`, deep stem); the defaults are ResNet-101.
      pool_channels: channels of each pyramid branch (512).
      decoder_channels: channels of the 3x3 conv after the pyramid (512).
      freeze_bn: backbone batch norm in inference mode, gamma/beta still trained (the authors'
        `freeze_batchnorm`); the decoder's batch norm always trains.
    """
    bn_mode = layers.BN_FROZEN_STATS if freeze_bn else layers.BN_TRAIN
    backbone = resnet.resnet("deep_stem", blocks, width, output_stride=8, bn_mode=bn_mode)
    inputs = layers.image_input()
    features = backbone(inputs)["layer4"]
    pyramid = [features]
    for bins in POOL_BINS:
        pooled = layers.AdaptiveAveragePool(bins, name=f"ppm{bins}_pool")(features)
        pooled = _conv_bn_relu(pooled, pool_channels, 1, f"ppm{bins}")
        pyramid.append(layers.ResizeLike(name=f"ppm{bins}_upsample")([pooled, features]))
    x = keras.layers.Concatenate(name="ppm_concat")(pyramid)
    x = _conv_bn_relu(x, decoder_channels, 3, "decoder")
    x = keras.layers.SpatialDropout2D(0.1, name="decoder_dropout")(x)
    logits = layers.conv(x, num_classes, 1, "classifier", use_bias=True,
                         kernel_initializer=layers.kaiming_normal(),
                         bias_initializer=layers.TorchBiasUniform(decoder_channels))
    logits = layers.ResizeLike(name="upsample_logits")([logits, inputs])
    return keras.Model(inputs, logits, name=name)


def build_pspnet_resnet101(num_classes, freeze_bn=True):
    return pspnet(num_classes, freeze_bn=freeze_bn)


def build_pspnet_small(num_classes, freeze_bn=True):
    """The same code at a CPU-test size: one block per stage, 1/8 of the channels."""
    return pspnet(num_classes, blocks=(1, 1, 1, 1), width=8, pool_channels=16, decoder_channels=32,
                  freeze_bn=freeze_bn, name="pspnet_small")
