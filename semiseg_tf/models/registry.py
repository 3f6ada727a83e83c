"""Name -> constructor registry, so flags and flagfiles can pick a network by name."""
import inspect

import tensorflow as tf

from semiseg_tf.models import layers

_BUILDERS = {}
_INPUT_MULTIPLES = {}
_FEATURE_SPLITS = set()


def register(name, input_multiple=1, feature_split=False):
    """Decorator: registers `fn(num_classes, **kwargs) -> keras.Model` under `name`.

    `input_multiple`: image heights and widths the network accepts must be multiples of this.
    `feature_split`: the network attaches an encoder/decoder split (`attach_feature_split`).
    """
    def wrap(fn):
        if name in _BUILDERS:
            raise ValueError(f"network {name!r} is registered twice")
        _BUILDERS[name] = fn
        _INPUT_MULTIPLES[name] = input_multiple
        if feature_split:
            _FEATURE_SPLITS.add(name)
        return fn
    return wrap


def input_multiple(name):
    """The multiple that image heights and widths must be for network `name`."""
    return _INPUT_MULTIPLES[name]


def has_feature_split(name):
    """Whether network `name` exposes an encoder/decoder split (`feature_split`)."""
    return name in _FEATURE_SPLITS


def available():
    """The names of the registered networks, sorted."""
    return sorted(_BUILDERS)


def build(name, num_classes, bands=3, **options):
    """Builds network `name` for images of `bands` channels; options it does not take (another
    network's flags) are left out."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(available())}")
    accepted = inspect.signature(_BUILDERS[name]).parameters
    with layers.input_bands(bands):
        network = _BUILDERS[name](num_classes,
                                  **{k: v for k, v in options.items() if k in accepted})
    network._semiseg_input_multiple = _INPUT_MULTIPLES[name]
    return network


def input_multiple_of(network):
    """The input multiple `build` recorded on a network it built; 1 for any other network."""
    return getattr(network, "_semiseg_input_multiple", 1)


def backbone_of(network):
    """The network's pretrained part (the nested model named "backbone"), or None if it has none."""
    try:
        return network.get_layer("backbone")
    except ValueError:
        return None


class FeatureSplit:
    """A network seen as an encoder and a decoder, for perturbations of its features (UniMatch).

    `encoder`: image -> list of feature maps; `decoder`: [image, *features] -> logits (the image
    only sets the output size). Both are functional models over the network's own layers, so they
    share its weights. Kept outside Keras's tracking (a plain object), so checkpoints and exports see
    only the network.
    """

    def __init__(self, encoder, decoder):
        self.encoder = encoder
        self.decoder = decoder

    def encode(self, images, training):
        features = self.encoder(images, training=training)
        return list(features) if isinstance(features, (list, tuple)) else [features]

    def decode(self, images, features, training):
        return self.decoder([tf.convert_to_tensor(images), *features], training=training)


def attach_feature_split(network, encoder, decoder):
    """Records `network`'s split: `encoder` (image -> features) and `decoder` ([image, *features]
    -> logits), functional models over its own layers."""
    network._semiseg_feature_split = FeatureSplit(encoder, decoder)
    return network


def feature_split(network):
    """The network's `FeatureSplit`; ValueError naming the network if it has none."""
    split = getattr(network, "_semiseg_feature_split", None)
    if split is None:
        raise ValueError(f"network {network.name!r} has no encoder/decoder split (the feature "
                         f"perturbation needs one; these have it: {', '.join(sorted(_FEATURE_SPLITS))})")
    return split
