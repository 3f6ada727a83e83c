"""Name -> constructor registry, so flags and flagfiles can pick a network by name."""
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


def build(name, num_classes, **kwargs):
    if name not in _BUILDERS:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(available())}")
    return _BUILDERS[name](num_classes, **kwargs)
