"""Every network and every consistency method the toolkit knows, as data, in one place.

`--help`, the config checks, the trainer and the tests read the catalog without importing
TensorFlow: an entry names where its implementation lives ("module:attribute"). The catalog never
imports it: the package imports each of its networks in semiseg_tf/models/__init__.py and each of
its methods in semiseg_tf/semisup/methods/__init__.py, plainly, and `load` finds the name there.
Adding a network or a method is its module (named in that import line), its test and one
`register` line here; code outside the package registers its own the same way, with the object
itself as `builder` (docs/layout.md, "Adding a method", "Adding a network").
"""
import dataclasses
import sys

NETWORK_WEIGHTS = ("file", "folder", "")


@dataclasses.dataclass(frozen=True)
class Network:
    """A segmentation network.

    Attributes:
      name: its --arch.
      builder: `fn(num_classes, **options) -> keras.Model` mapping normalised NHWC images to logits
        at input resolution, or its "module:attribute". Options it does not take (another
        network's flags: freeze_bn, deeplab2_aspp_two_branches) are not passed. A pretrained part
        is a nested model named "backbone" (`models.backbone_of`); a network with an
        encoder/decoder split records it with `models.registry.attach_feature_split`.
      family: networks of one family share code and recipes ("deeplab2", "unet", ...).
      input_multiple: image heights and widths must be multiples of this.
      weights: what --backbone_weights takes: "file" (a weight file, models/weights.py),
        "folder" (a checkpoint folder the backbone reads itself, `load_pretrained`) or "" (no
        pretrained part).
      feature_split: whether the network records an encoder/decoder split (UniMatch's feature
        perturbations need one).
      test_size: the same code at a CPU-test size, for which no pretrained weights exist.
    """
    name: str
    builder: object
    family: str
    input_multiple: int = 1
    weights: str = ""
    feature_split: bool = False
    test_size: bool = False


@dataclasses.dataclass(frozen=True)
class Method:
    """A consistency method (--perturbation).

    Attributes:
      name: its --perturbation.
      builder: a `semisup.methods.base.Perturbation` subclass, or its "module:attribute"; a run
        makes it with `builder.from_config(cfg)`.
      summary: one line for --help.
      sections: the Config sections `from_config` reads (a test holds it to them).
      needs_feature_split: whether the network must have an encoder/decoder split: a bool, or a
        function of the Config (when an option turns the need off).
    """
    name: str
    builder: object
    summary: str
    sections: tuple = ()
    needs_feature_split: object = False


_NETWORKS = {}
_METHODS = {}


def register(entry):
    """Adds a `Network` or `Method` entry; ValueError if it is incomplete or its name is taken."""
    kinds = {Network: _NETWORKS, Method: _METHODS}
    if type(entry) not in kinds:
        raise ValueError(f"catalog.register takes a catalog.Network or catalog.Method, not {entry!r}")
    table = kinds[type(entry)]
    kind = type(entry).__name__.lower()
    if not (isinstance(entry.name, str) and entry.name.isidentifier()):
        raise ValueError(f"{kind} {entry.name!r}: a name must be a Python identifier")
    if entry.name in table:
        raise ValueError(f"{kind} {entry.name!r} is registered twice")
    if not (callable(entry.builder) or (isinstance(entry.builder, str)
                                        and entry.builder.count(":") == 1)):
        raise ValueError(f"{kind} {entry.name!r}: builder must be callable or 'module:attribute'")
    if isinstance(entry, Network):
        if not entry.family:
            raise ValueError(f"network {entry.name!r}: no family")
        if not (isinstance(entry.input_multiple, int) and entry.input_multiple > 0):
            raise ValueError(f"network {entry.name!r}: input_multiple must be a positive integer")
        if entry.weights not in NETWORK_WEIGHTS:
            raise ValueError(f"network {entry.name!r}: weights must be one of {NETWORK_WEIGHTS}")
    else:
        if not entry.summary:
            raise ValueError(f"method {entry.name!r}: no summary for --help")
        if not (isinstance(entry.needs_feature_split, bool) or callable(entry.needs_feature_split)):
            raise ValueError(f"method {entry.name!r}: needs_feature_split must be a bool or a "
                             "function of the Config")
    table[entry.name] = entry
    return entry


def network(name):
    """The `Network` entry `name`; ValueError naming the choices if there is none."""
    if name not in _NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(network_names())}")
    return _NETWORKS[name]


def method(name):
    """The `Method` entry `name`; ValueError naming the choices if there is none."""
    if name not in _METHODS:
        raise ValueError(f"unknown perturbation {name!r}; choose one of {', '.join(method_names())}")
    return _METHODS[name]


def network_names():
    return sorted(_NETWORKS)


def method_names():
    return sorted(_METHODS)


def split_network_names():
    """The networks with an encoder/decoder split, sorted."""
    return [name for name in network_names() if _NETWORKS[name].feature_split]


def needs_feature_split(method_name, cfg):
    """Whether method `method_name`, with the options of Config `cfg`, needs the split."""
    need = method(method_name).needs_feature_split
    return bool(need(cfg) if callable(need) else need)


def load(builder):
    """An entry's builder: the object itself, or the attribute its "module:attribute" names in
    that module, which the package has imported (see above; a name here is never a module's only
    import, so the import graph shows every dependency)."""
    if callable(builder):
        return builder
    module, attribute = builder.split(":")
    if module not in sys.modules:
        raise ValueError(f"catalog entry {builder!r}: {module} is not imported; name it in its "
                         "package's import line (docs/layout.md, 'Adding a network'), or register "
                         "the object itself")
    return getattr(sys.modules[module], attribute)


# Networks (semiseg_tf/models/; docs/methods.md, "Networks").
for _size in ("resnet101", "small"):
    register(Network(f"deeplab2_{_size}", f"semiseg_tf.models.deeplab_v2:build_deeplab2_{_size}",
                     "deeplab2", weights="file", test_size=_size == "small"))
    register(Network(f"deeplab3plus_{_size}",
                     f"semiseg_tf.models.deeplab_v3plus:build_deeplab3plus_{_size}",
                     "deeplab3plus", weights="file", feature_split=True,
                     test_size=_size == "small"))
    register(Network(f"pspnet_{_size}", f"semiseg_tf.models.pspnet:build_pspnet_{_size}",
                     "pspnet", weights="file", test_size=_size == "small"))
register(Network("dense_unet_densenet161",
                 "semiseg_tf.models.dense_unet:build_dense_unet_densenet161", "dense_unet",
                 weights="file"))
register(Network("dense_unet_small", "semiseg_tf.models.dense_unet:build_dense_unet_small",
                 "dense_unet", weights="file", test_size=True))
for _size in ("tiny", "small", "base"):
    # DINOv2 sees 14-pixel patches.
    register(Network(f"dinov2_{_size}", f"semiseg_tf.models.dinov2:build_dinov2_{_size}", "dinov2",
                     input_multiple=14, weights="folder", feature_split=True,
                     test_size=_size == "tiny"))
# The stem and each level of the U-net halve the resolution: 2 ** (depth + 1).
register(Network("small_unet", "semiseg_tf.models.small_unet:build_small_unet", "unet",
                 input_multiple=16, feature_split=True))
register(Network("tiny_unet", "semiseg_tf.models.small_unet:build_tiny_unet", "unet",
                 input_multiple=4, feature_split=True))

# Methods (semiseg_tf/semisup/methods/; docs/methods.md).
_PSEUDO_LABELS = "semiseg_tf.semisup.methods.pseudo_labels"
register(Method("cutmix", "semiseg_tf.semisup.methods.mixing:CutMix",
                "two images mixed by box masks", ("boxmask",)))
register(Method("cutout", "semiseg_tf.semisup.methods.mixing:Cutout",
                "the student sees a box-masked image", ("boxmask",)))
register(Method("augment", "semiseg_tf.semisup.methods.augmentation:StandardAugmentation",
                "teacher and student see differently augmented crops"))
register(Method("ict", "semiseg_tf.semisup.methods.mixing:ICT",
                "mixup of two images by a Beta factor", ("ict",)))
register(Method("vat", "semiseg_tf.semisup.methods.vat:VAT", "virtual adversarial",
                ("vat", "method")))
register(Method("fixmatch", f"{_PSEUDO_LABELS}:FixMatch",
                "hard pseudo-labels from the weak view train the strong view, with UniMatch's "
                "CutMix box", ("pseudo_labels",)))
register(Method("unimatch", f"{_PSEUDO_LABELS}:UniMatch",
                "fixmatch with two strong views and a stream of the weak view's encoder features "
                "with half their channels dropped", ("pseudo_labels", "unimatch"),
                needs_feature_split=True))
register(Method("unimatch_v2", f"{_PSEUDO_LABELS}:UniMatchV2",
                "two strong views whose encoder features are dropped complementarily, targets "
                "from the teacher in inference mode", ("pseudo_labels", "unimatch"),
                needs_feature_split=lambda cfg: cfg.unimatch.complementary))
