"""DINOv2 encoders (keras-hub's DINOV2Backbone) with UniMatch V2's DPT decoder.

keras-hub's backbone interpolates its position embeddings once, to the image size it is built
for; segmentation feeds images of any size (training crops, whole validation images padded to a
multiple of the patch). `DINOv2Features` therefore runs the backbone's own layers (patch
embedding, class token, transformer blocks, final norm) on images of any size, interpolating the
trained position embeddings for each input as DINOv2 does (bicubic, as PyTorch's, in float32), and
returns the normalised patch tokens of four blocks as grids. Weights load into the backbone
unchanged, from keras-hub presets or Hugging Face checkpoints (models/weights.py).
"""
import dataclasses

import keras
import tensorflow as tf

from semiseg_tf.models import dpt, layers
from semiseg_tf.models.registry import attach_feature_split

PATCH_SIZE = 14
# DINOv2's position embeddings are trained for 518 x 518 images: a 37 x 37 grid of patches.
POSITION_IMAGE_SIZE = 518


@dataclasses.dataclass(frozen=True)
class DINOv2Size:
    """One DINOv2 encoder size and UniMatch V2's decoder widths for it (its model_configs)."""
    hidden_dim: int
    num_layers: int
    num_heads: int
    intermediate_dim: int
    taps: tuple              # the blocks (0-based) whose tokens the decoder reads
    features: int
    out_channels: tuple
    position_image_size: int = POSITION_IMAGE_SIZE


SIZES = {
    "dinov2_small": DINOv2Size(384, 12, 6, 1536, (2, 5, 8, 11), 64, (48, 96, 192, 384)),
    "dinov2_base": DINOv2Size(768, 12, 12, 3072, (2, 5, 8, 11), 128, (96, 192, 384, 768)),
    # For the tests and the CPU demo: four narrow blocks, position embeddings for 56 x 56.
    "dinov2_tiny": DINOv2Size(32, 4, 2, 64, (0, 1, 2, 3), 16, (8, 16, 32, 32), 56),
}


def cubic_weights(in_size, out_size):
    """[out_size, in_size] float32: PyTorch's bicubic interpolation (a = -0.75, half-pixel
    centres, align_corners=False, edge samples clamped) as a matrix; `out_size` may be a tensor."""
    a = -0.75
    scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
    source = (tf.range(tf.cast(out_size, tf.float32)) + 0.5) * scale - 0.5
    start = tf.floor(source)
    t = source - start
    distances = tf.stack([1 + t, t, 1 - t, 2 - t], axis=1)          # to taps -1, 0, 1, 2

    def near(x):        # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):         # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    weights = tf.stack([far(distances[:, 0]), near(distances[:, 1]), near(distances[:, 2]),
                        far(distances[:, 3])], axis=1)
    taps = tf.clip_by_value(tf.cast(start, tf.int32)[:, None] + tf.range(-1, 3)[None], 0,
                            in_size - 1)
    return tf.einsum("ok,oki->oi", weights, tf.one_hot(taps, in_size, dtype=tf.float32))


@keras.saving.register_keras_serializable("semiseg_tf")
class DINOv2Features(keras.layers.Layer):
    """keras-hub's DINOv2 backbone on images of any size (multiples of the patch):
    images [B, H, W, bands] -> the final-normed patch tokens of blocks `taps`, each [B, H / 14,
    W / 14, hidden]. Named "backbone", the network's pretrained part (its learning-rate scale)."""

    def __init__(self, size, bands=3, name="backbone", **kwargs):
        super().__init__(name=name, **kwargs)
        import keras_hub
        self.size, self.bands = size, bands
        side = size.position_image_size
        self.dinov2 = keras_hub.models.DINOV2Backbone(
            patch_size=PATCH_SIZE, num_layers=size.num_layers, hidden_dim=size.hidden_dim,
            num_heads=size.num_heads, intermediate_dim=size.intermediate_dim,
            layer_scale_init_value=1.0, use_mask_token=False, image_shape=(side, side, bands),
            position_embedding_shape=(side, side, bands), name="dinov2")
        # keras-hub's encoder keeps its blocks in a list, which tf.train.Checkpoint does not follow
        # (a Keras tracked list is no TensorFlow trackable): named here one by one, they are saved.
        for index, block in enumerate(self.dinov2.encoder.layers):
            setattr(self, f"block_{index}", block)

    def _position_embeddings(self, rows, columns):
        """The trained embeddings (class token's, then the grid's) interpolated to rows x columns."""
        embeddings = self.dinov2.embeddings
        table = tf.cast(embeddings.interpolated_position_embeddings, tf.float32)
        grid = self.size.position_image_size // PATCH_SIZE
        patches = tf.reshape(table[:, 1:], [grid, grid, -1])
        patches = tf.einsum("ri,ijc,sj->rsc", cubic_weights(grid, rows), patches,
                            cubic_weights(grid, columns))
        patches = tf.reshape(patches, [1, rows * columns, -1])
        return tf.concat([table[:, :1], patches], axis=1)

    def call(self, images, training=False):
        embeddings = self.dinov2.embeddings
        shape = tf.shape(images)
        rows, columns = shape[1] // PATCH_SIZE, shape[2] // PATCH_SIZE
        tokens = embeddings.patch_embeddings(images, training=training)
        cls = tf.tile(tf.cast(embeddings.cls_token, tokens.dtype), [shape[0], 1, 1])
        tokens = tf.concat([cls, tokens], axis=1)
        tokens = tokens + tf.cast(self._position_embeddings(rows, columns), tokens.dtype)
        tokens = embeddings.dropout(tokens, training=training)
        _, pyramid = self.dinov2.encoder(tokens, training=training)
        grids = []
        for tap in self.size.taps:
            normed = self.dinov2.layernorm(pyramid[f"stage{tap + 1}"])[:, 1:]
            grids.append(tf.reshape(normed, [shape[0], rows, columns, self.size.hidden_dim]))
        return grids

    def get_config(self):
        return {**super().get_config(), "size": dataclasses.asdict(self.size), "bands": self.bands}

    @classmethod
    def from_config(cls, config):
        size = config.pop("size")
        size = DINOv2Size(**{k: tuple(v) if isinstance(v, list) else v for k, v in size.items()})
        return cls(size, **config)

    def load_pretrained(self, path):
        """Loads a fetched DINOv2 checkpoint (`load_pretrained`); what --backbone_weights calls."""
        return load_pretrained(self, path)

    def compute_output_shape(self, input_shape):
        rows, columns = (None if s is None else s // PATCH_SIZE for s in input_shape[1:3])
        return [(input_shape[0], rows, columns, self.size.hidden_dim)] * len(self.size.taps)


def dinov2_dpt(num_classes, size_name, name=None):
    """DINOv2 encoder + DPT decoder; inputs of sides that are multiples of 14."""
    size = SIZES[size_name]
    images = layers.image_input()
    encoder_layer = DINOv2Features(size, bands=images.shape[-1])
    features = encoder_layer(images)
    decoder = dpt.dpt_decoder(num_classes, size.hidden_dim, size.features, size.out_channels)
    network = keras.Model(images, decoder([images, *features]), name=name or size_name)
    encoder = keras.Model(images, features, name=f"{network.name}_encoder")
    return attach_feature_split(network, encoder, decoder)


def build_dinov2_tiny(num_classes):
    """DINOv2 at a CPU-test size: the same code, random weights only."""
    return dinov2_dpt(num_classes, "dinov2_tiny")


def build_dinov2_small(num_classes):
    return dinov2_dpt(num_classes, "dinov2_small")


def build_dinov2_base(num_classes):
    return dinov2_dpt(num_classes, "dinov2_base")


# A DINOv2 config.json is a few kilobytes; a larger one is not read.
MAX_CONFIG_BYTES = 2 ** 20
# The weight files of either folder kind hold the encoder in float32 at most (and a few small
# tensors besides): a file larger than twice that is not read.
WEIGHT_FILES = ("model.safetensors", "model.weights.h5")


def declared_size(path):
    """(width, blocks, heads, MLP width, patch) that the config.json of checkpoint folder `path`
    declares, read and checked before anything is built from it (keras-hub would build the whole
    declared backbone first). WeightsError, one line, for a config that is missing, too large, not
    JSON, or not a DINOv2's."""
    import json
    import os

    from semiseg_tf.errors import WeightsError
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise WeightsError(f"{path}: not a DINOv2 checkpoint folder (no "
                           "config.json; give a Hugging Face checkpoint folder or a keras-hub "
                           "preset folder)")
    if os.path.getsize(config_path) > MAX_CONFIG_BYTES:
        raise WeightsError(f"{path}: config.json has "
                           f"{os.path.getsize(config_path)} bytes, more than a DINOv2 config's "
                           f"{MAX_CONFIG_BYTES}")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        if config.get("class_name") == "DINOV2Backbone":          # a keras-hub preset
            c = config["config"]
            size = (c["hidden_dim"], c["num_layers"], c["num_heads"], c["intermediate_dim"],
                    c["patch_size"])
        elif config.get("model_type") == "dinov2":                 # a Hugging Face checkpoint
            size = (config["hidden_size"], config["num_hidden_layers"],
                    config["num_attention_heads"],
                    round(config["hidden_size"] * config.get("mlp_ratio", 4)), config["patch_size"])
        else:
            raise KeyError("model_type")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
            raise ValueError("sizes that are not positive integers")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
        reason = "not JSON" if isinstance(error, json.JSONDecodeError) else (
            f"no DINOv2 sizes ({str(error)[:80]})")
        raise WeightsError(f"{path}: config.json is not a DINOv2 checkpoint's "
                           f"config ({reason})") from None
    return size


def load_pretrained(features, path):
    """Loads DINOv2 weights into a `DINOv2Features` layer from `path`: a Hugging Face checkpoint
    folder (config.json and model.safetensors, converted by keras-hub) or a keras-hub preset
    folder, fetched by the user (nothing is downloaded). The checkpoint's own position embeddings
    (for 518 x 518) are kept and interpolated per input; a first layer for other than 3 bands
    gets the RGB filters adapted (`weights.adapt_rgb_kernel`). Returns the number of weights
    loaded; WeightsError naming the file for a folder that is not a DINOv2 of this size."""
    import os

    import keras_hub

    from semiseg_tf.errors import WeightsError
    from semiseg_tf.models import weights as weights_lib
    if not os.path.isdir(path):
        raise WeightsError(f"{path}: not a folder (give a Hugging Face DINOv2 "
                           "checkpoint folder or a keras-hub preset folder)")
    size, ours = features.size, features.dinov2
    found = declared_size(path)
    expected = (size.hidden_dim, size.num_layers, size.num_heads, size.intermediate_dim,
                PATCH_SIZE)
    if found != expected:
        raise WeightsError(f"{path}: a DINOv2 of width {found[0]}, {found[1]} "
                           f"blocks, {found[2]} heads, MLP {found[3]}, patch {found[4]}; the "
                           f"network is {expected[0]}, {expected[1]}, {expected[2]}, MLP "
                           f"{expected[3]}, patch {expected[4]}")
    largest = 2 * 4 * ours.count_params() + MAX_CONFIG_BYTES
    for name in WEIGHT_FILES:
        weight_path = os.path.join(path, name)
        if os.path.isfile(weight_path) and os.path.getsize(weight_path) > largest:
            raise WeightsError(f"{path}: {name} has "
                               f"{os.path.getsize(weight_path)} bytes, more than twice this "
                               f"network's encoder in float32 ({largest} bytes at most)")
    try:
        source = keras_hub.models.DINOV2Backbone.from_preset(path)
    except Exception as error:   # keras-hub raises many kinds for a folder it cannot read
        raise WeightsError(f"{path}: not a DINOv2 checkpoint keras-hub reads "
                           f"({str(error).splitlines()[0][:160]})") from None
    loaded = 0
    # Part by part (the same keras-hub layers, built alike): their variables come in one order,
    # whatever the two backbones are named.
    for part in ("embeddings", "encoder", "layernorm"):
        # The masked-image-modelling token is not part of ours (segmentation never masks).
        stored_weights = [w for w in getattr(source, part).weights
                          if not w.path.endswith("mask_token")]
        pairs = zip(getattr(ours, part).weights, stored_weights, strict=True)
        for variable, stored in pairs:
            key = f"{part}/{variable.path.split('/', 1)[1]}"
            if key.endswith("position_embeddings"):
                # The checkpoint's own table (keras-hub's interpolated one is for its image size).
                stored = source.embeddings.position_embeddings
            value = stored.numpy()
            if key.endswith("projection/kernel") and value.shape[2] != variable.shape[2]:
                value = weights_lib.adapt_rgb_kernel(value, variable.shape[2])
            if tuple(value.shape) != tuple(variable.shape):
                raise WeightsError(f"{path}: {key} has shape {value.shape}, "
                                   f"the network's {tuple(variable.shape)} (position embeddings "
                                   "for another image size?)")
            variable.assign(value)
            loaded += 1
    return loaded
