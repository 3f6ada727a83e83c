"""DeepLab v3+ on a dilated torchvision ResNet-101 (after VainF / YudeWang).

ASPP on the stride-8 features (a 1x1 branch, 3x3 branches at dilations 12, 24, 36 and image pooling,
each conv-BN-ReLU; projected to 256 with dropout 0.5), upsampled to the stride-4 map and joined with a
48-channel projection of stage 1; two 3x3 conv-BN-ReLU, a 1x1 classifier and a bilinear upsampling to
the input size. Head convs start from kaiming normal, as the authors'. The head is a nested model,
`decoder`, so that UniMatch's feature stream can decode perturbed features (`models.feature_split`).
"""
import keras

from semiseg_tf.models import layers, resnet
from semiseg_tf.models.registry import attach_feature_split

ASPP_DILATIONS = (12, 24, 36)


def _conv_bn_relu(x, channels, kernel, name, dilation=1):
    return layers.conv_bn_relu(x, channels, kernel, name, dilation=dilation,
                               kernel_initializer=layers.kaiming_normal())


def deeplab_v3plus(num_classes, blocks=resnet.RESNET101_BLOCKS, width=64, aspp_channels=256,
                   low_level_channels=48, freeze_bn=True, name="deeplab3plus_resnet101"):
    """Args:
      num_classes: channels of the logits.
      blocks, width: the ResNet's size (`resnet.resnet`); the defaults are ResNet-101.
      aspp_channels: channels of the ASPP branches and of the decoder (256).
      low_level_channels: channels of the stage-1 projection (48).
      freeze_bn: backbone batch norm in inference mode, gamma/beta still trained (the authors'
        `freeze_batchnorm`); the head's batch norm always trains.
    """
    bn_mode = layers.BN_FROZEN_STATS if freeze_bn else layers.BN_TRAIN
    backbone = resnet.resnet("torchvision", blocks, width, output_stride=8, bn_mode=bn_mode)
    inputs = layers.image_input()
    features = backbone(inputs)
    decoder = _decoder(num_classes, features["layer1"].shape[-1], features["layer4"].shape[-1],
                       aspp_channels, low_level_channels)
    logits = decoder([inputs, features["layer1"], features["layer4"]])
    network = keras.Model(inputs, logits, name=name)
    # UniMatch's split: the backbone's stage-1 and stage-4 features, and the rest as the decoder.
    encoder = keras.Model(inputs, [features["layer1"], features["layer4"]], name=f"{name}_encoder")
    return attach_feature_split(network, encoder, decoder)


def _decoder(num_classes, low_channels, high_channels, aspp_channels, low_level_channels):
    """The head, a model of its own: [image (for the output size), stage-1, stage-4 features] ->
    logits at the image's size."""
    image = layers.image_input()
    low_in = keras.Input((None, None, low_channels), name="layer1")
    high = keras.Input((None, None, high_channels), name="layer4")
    branches = [_conv_bn_relu(high, aspp_channels, 1, "aspp_1x1")]
    branches += [_conv_bn_relu(high, aspp_channels, 3, f"aspp_d{d}", dilation=d)
                 for d in ASPP_DILATIONS]
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(high)
    pooled = _conv_bn_relu(pooled, aspp_channels, 1, "aspp_pool")
    branches.append(layers.ResizeLike(name="aspp_pool_upsample")([pooled, high]))
    aspp = keras.layers.Concatenate(name="aspp_concat")(branches)
    aspp = _conv_bn_relu(aspp, aspp_channels, 1, "aspp_project")
    aspp = keras.layers.Dropout(0.5, name="aspp_dropout")(aspp)

    low = _conv_bn_relu(low_in, low_level_channels, 1, "low_level_project")
    x = layers.ResizeLike(name="aspp_upsample")([aspp, low])
    x = keras.layers.Concatenate(name="decoder_concat")([low, x])
    x = _conv_bn_relu(x, aspp_channels, 3, "decoder_a")
    x = _conv_bn_relu(x, aspp_channels, 3, "decoder_b")
    logits = layers.conv(x, num_classes, 1, "classifier", use_bias=True,
                         kernel_initializer=layers.kaiming_normal(),
                         bias_initializer=layers.TorchBiasUniform(aspp_channels))
    logits = layers.ResizeLike(name="upsample_logits")([logits, image])
    return keras.Model([image, low_in, high], logits, name="decoder")


def build_deeplab3plus_resnet101(num_classes, freeze_bn=True):
    return deeplab_v3plus(num_classes, freeze_bn=freeze_bn)


def build_deeplab3plus_small(num_classes, freeze_bn=True):
    """The same code at a CPU-test size: one block per stage, 1/8 of the channels."""
    return deeplab_v3plus(num_classes, blocks=(1, 1, 1, 1), width=8, aspp_channels=32,
                          low_level_channels=12, freeze_bn=freeze_bn, name="deeplab3plus_small")
