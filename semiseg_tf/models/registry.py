"""Networks built by their catalog name (semiseg_tf/catalog.py), and what a built network
records: its input multiple and, for UniMatch's feature perturbations, its encoder/decoder split."""
import inspect

import tensorflow as tf

from semiseg_tf import catalog
from semiseg_tf.models import layers


def input_multiple(name):
    """The multiple that image heights and widths must be for network `name`."""
    return catalog.network(name).input_multiple


def has_feature_split(name):
    """Whether network `name` exposes an encoder/decoder split (`feature_split`)."""
    return catalog.network(name).feature_split


def available():
    """The names of the catalogued networks, sorted."""
    return catalog.network_names()


def build(name, num_classes, bands=3, **options):
    """Builds network `name` for images of `bands` channels; options it does not take (another
    network's flags) are left out."""
    entry = catalog.network(name)
    builder = catalog.load(entry.builder)
    accepted = inspect.signature(builder).parameters
    with layers.input_bands(bands):
        network = builder(num_classes, **{k: v for k, v in options.items() if k in accepted})
    network._semiseg_input_multiple = entry.input_multiple
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
                         "perturbation needs one; these have it: "
                         f"{', '.join(catalog.split_network_names())})")
    return split
