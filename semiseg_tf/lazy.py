"""Modules imported on first use, so that a command answers `--help` without loading TensorFlow.

A command module names the heavy modules it uses with `module("semiseg_tf.training")` instead of
an import statement; the module is executed when one of its attributes is first read (Python's
`importlib.util.LazyLoader`), which for a command is inside `main`, after the help is printed.
"""
import importlib.util
import sys


def module(name):
    """The module `name`: the imported one if it is loaded already, else one that loads itself when
    an attribute of it is first read."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    lazy = importlib.util.module_from_spec(spec)
    sys.modules[name] = lazy
    loader.exec_module(lazy)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, lazy)
    return lazy
