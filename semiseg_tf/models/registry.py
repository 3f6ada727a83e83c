"""Name -> constructor registry, so flags and flagfiles can pick a network by name."""
import inspect

_BUILDERS = {}
_INPUT_MULTIPLES = {}


def register(name, input_multiple=1):
    """Decorator: registers `fn(num_classes, **kwargs) -> keras.Model` under `name`.

    `input_multiple`: image heights and widths the network accepts must be multiples of this.
    """
    def wrap(fn):
        if name in _BUILDERS:
            raise ValueError(f"network {name!r} is registered twice")
        _BUILDERS[name] = fn
        _INPUT_MULTIPLES[name] = input_multiple
        return fn
    return wrap


def input_multiple(name):
    return _INPUT_MULTIPLES[name]


def available():
    return sorted(_BUILDERS)


def build(name, num_classes, **options):
    """Builds network `name`; options it does not take (another network's flags) are left out."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(available())}")
    accepted = inspect.signature(_BUILDERS[name]).parameters
    return _BUILDERS[name](num_classes, **{k: v for k, v in options.items() if k in accepted})


def backbone_of(network):
    """The network's pretrained part (the nested model named "backbone"), or None if it has none."""
    try:
        return network.get_layer("backbone")
    except ValueError:
        return None
