"""The DPT decoder as UniMatch V2 uses it over a ViT encoder (its model/semseg/dpt.py, use_bn=False).

Four token maps of the encoder, each [B, h, w, C] on the patch grid, are projected (1x1 convs to
`out_channels`), brought to four scales (4x and 2x by transposed convolutions, 1x, and 1/2 by a
stride-2 convolution), each mapped to `features` channels (3x3, no bias), then fused from the
coarsest up by RefineNet blocks (residual conv units, bilinear resizing with corner alignment) and
turned into class logits, resized to the image's size. Layer names follow the PyTorch module names,
so that weights convert by name.
"""
import keras

from semiseg_tf.models.layers import ResizeLike

# PyTorch's ConvTranspose2d / Conv2d kernel sizes and strides of the four resize layers.
_RESIZE = ((4, 4, "transpose"), (2, 2, "transpose"), (1, 1, "identity"), (3, 2, "conv"))


def _residual_conv_unit(x, features, name):
    """ReLU, 3x3 conv, ReLU, 3x3 conv, plus the input (the ReLUs are not in place)."""
    out = keras.layers.ReLU(name=f"{name}_relu1")(x)
    out = keras.layers.Conv2D(features, 3, padding="same", name=f"{name}_conv1")(out)
    out = keras.layers.ReLU(name=f"{name}_relu2")(out)
    out = keras.layers.Conv2D(features, 3, padding="same", name=f"{name}_conv2")(out)
    return keras.layers.Add(name=f"{name}_add")([out, x])


def _fusion_block(features, coarser, skip, like, name):
    """RefineNet's FeatureFusionBlock: `coarser` (+ the residual unit of `skip`), a residual unit,
    bilinear resizing (corners aligned) to the size of `like` (None: twice the size), 1x1 conv."""
    x = coarser
    if skip is not None:
        residual = _residual_conv_unit(skip, features, f"{name}_resConfUnit1")
        x = keras.layers.Add(name=f"{name}_skip_add")([x, residual])
    x = _residual_conv_unit(x, features, f"{name}_resConfUnit2")
    # PyTorch's interpolate(size=..., or scale_factor=2, align_corners=True).
    x = ResizeLike(align_corners=True, scale=1 if like is not None else 2,
                   name=f"{name}_resize")([x, x if like is None else like])
    return keras.layers.Conv2D(features, 1, name=f"{name}_out_conv")(x)


def dpt_decoder(num_classes, token_channels, features, out_channels, name="decoder"):
    """The decoder model: [image, tokens 0..3 ([B, h, w, token_channels] each)] -> logits at the
    image's size (bilinear, corners aligned: the image is a whole number of patches)."""
    image = keras.Input((None, None, None), name="image")
    tokens = [keras.Input((None, None, token_channels), name=f"tokens{i}") for i in range(4)]
    scaled = []
    for i, (x, channels, (kernel, stride, kind)) in enumerate(zip(tokens, out_channels, _RESIZE)):
        x = keras.layers.Conv2D(channels, 1, name=f"projects_{i}")(x)
        if kind == "transpose":
            x = keras.layers.Conv2DTranspose(channels, kernel, strides=stride,
                                             name=f"resize_layers_{i}")(x)
        elif kind == "conv":
            # PyTorch's padding=1 on both sides, then stride 2 (Keras's "same" pads unevenly).
            x = keras.layers.ZeroPadding2D(1, name=f"resize_layers_{i}_pad")(x)
            x = keras.layers.Conv2D(channels, kernel, strides=stride, name=f"resize_layers_{i}")(x)
        scaled.append(keras.layers.Conv2D(features, 3, padding="same", use_bias=False,
                                          name=f"scratch_layer{i + 1}_rn")(x))
    path = _fusion_block(features, scaled[3], None, scaled[2], "scratch_refinenet4")
    path = _fusion_block(features, path, scaled[2], scaled[1], "scratch_refinenet3")
    path = _fusion_block(features, path, scaled[1], scaled[0], "scratch_refinenet2")
    path = _fusion_block(features, path, scaled[0], None, "scratch_refinenet1")
    x = keras.layers.Conv2D(features, 3, padding="same", name="scratch_output_conv_0")(path)
    x = keras.layers.ReLU(name="scratch_output_conv_1")(x)
    x = keras.layers.Conv2D(num_classes, 1, name="scratch_output_conv_2")(x)
    logits = ResizeLike(align_corners=True, name="logits_resize")([x, image])
    return keras.Model([image, *tokens], logits, name=name)
