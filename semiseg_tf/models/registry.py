"""Name -> constructor registry, so flags and flagfiles can pick a network by name."""
_BUILDERS = {}


def register(name):
    """Decorator: registers `fn(num_classes, **kwargs) -> keras.Model` under `name`."""
    def wrap(fn):
        if name in _BUILDERS:
            raise ValueError(f"network {name!r} is registered twice")
        _BUILDERS[name] = fn
        return fn
    return wrap


def available():
    return sorted(_BUILDERS)


def build(name, num_classes, **kwargs):
    if name not in _BUILDERS:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(available())}")
    return _BUILDERS[name](num_classes, **kwargs)
