"""A small U-Net that trains on a 2-core CPU in minutes: for the demo and the tests."""
import keras

from semiseg_tf.models import layers
from semiseg_tf.models.layers import ResizeLike, batch_norm
from semiseg_tf.models.registry import attach_feature_split


def _conv_bn_relu(x, channels, name):
    x = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = batch_norm(f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def small_unet(num_classes, base_channels=16, depth=3, name="small_unet"):
    """U-Net on a stride-2 stem, with `depth` more 2x down-samplings; logits upsampled 2x at the end.

    Two conv-BN-ReLU per level, channels doubling per level. The stem halves the resolution first
    because full-resolution convolutions cost most of a CPU step (output stride 2, like DeepLab's 8).
    Input sizes must be multiples of 2**(depth + 1). The up path is a nested model, `decoder`, so
    that UniMatch's feature stream can decode perturbed features (`models.feature_split`).
    """
    inputs = layers.image_input()
    x = keras.layers.Conv2D(base_channels, 3, strides=2, padding="same", use_bias=False,
                            name="stem_conv")(inputs)
    x = batch_norm("stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    skips = []
    for level in range(depth):
        channels = base_channels * 2 ** level
        x = _conv_bn_relu(x, channels, f"down{level}a")
        x = _conv_bn_relu(x, channels, f"down{level}b")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = _conv_bn_relu(x, base_channels * 2 ** depth, "bottom_a")
    bottom = _conv_bn_relu(x, base_channels * 2 ** depth, "bottom_b")
    features = skips + [bottom]
    decoder = _decoder(num_classes, base_channels, depth)
    network = keras.Model(inputs, decoder([inputs, *features]), name=name)
    # UniMatch's split: every skip and the bottom are the encoder's features.
    return attach_feature_split(network, keras.Model(inputs, features, name=f"{name}_encoder"),
                                decoder)


def _decoder(num_classes, base_channels, depth):
    """The up path, a model of its own: [image (for the output size), skip 0 .. depth - 1, bottom]
    -> logits at the image's size."""
    image = layers.image_input()
    skips = [keras.Input((None, None, base_channels * 2 ** level), name=f"encoder_skip{level}")
             for level in range(depth)]
    bottom = keras.Input((None, None, base_channels * 2 ** depth), name="encoder_bottom")
    x = bottom
    for level in reversed(range(depth)):
        # Bilinear 2x, as UpSampling2D computes it, but also for images whose size is only known
        # when they arrive (evaluation on full images of varied sizes).
        x = ResizeLike(name=f"up{level}")([x, skips[level]])
        x = keras.layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = _conv_bn_relu(x, base_channels * 2 ** level, f"up{level}a")
        x = _conv_bn_relu(x, base_channels * 2 ** level, f"up{level}b")
    logits = keras.layers.Conv2D(num_classes, 1, name="logits")(x)
    logits = ResizeLike(name="upsample_logits")([logits, image])
    return keras.Model([image, *skips, bottom], logits, name="decoder")


# The stem and each level halve the resolution: sizes must divide by 2 ** (depth + 1), the input
# multiple of these networks' catalog entries.
_SMALL_DEPTH, _TINY_DEPTH = 3, 1


def build_small_unet(num_classes, **kwargs):
    return small_unet(num_classes, depth=_SMALL_DEPTH, **kwargs)


def build_tiny_unet(num_classes, **kwargs):
    """A still smaller net for unit tests (seconds per run)."""
    return small_unet(num_classes, base_channels=4, depth=_TINY_DEPTH, name="tiny_unet", **kwargs)
