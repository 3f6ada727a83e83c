"""semiseg_tf: semi-supervised semantic segmentation in TensorFlow 2 / Keras 3.

From Python (docs/python.md):

    import semiseg_tf
    student = semiseg_tf.build_network("small_unet", num_classes=6)
    teacher = semiseg_tf.build_network("small_unet", num_classes=6)
    model = semiseg_tf.MeanTeacher(student, teacher, semiseg_tf.CutMix())
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    batches = semiseg_tf.training_batches(labelled, unlabelled, model, crop_size=(64, 64),
                                          batch_size=8)
    model.fit(batches, steps_per_epoch=500, epochs=4)
    model.evaluate(semiseg_tf.evaluation_batches(validation))     # miou, pixel_accuracy
"""
__version__ = "0.1.0"

import os as _os
import sys as _sys

# TensorFlow's C++ logging below errors hides the progress output of the command-line tools; users
# can still ask for it by setting the variable themselves (0 also keeps the start-up notices).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load():
    """Imports TensorFlow without its start-up notices, then the networks and the optimiser's
    schedule, which register their classes with Keras when imported, so that
    `keras.saving.load_model("network.keras")` works after a plain `import semiseg_tf`."""
    from semiseg_tf import quiet_start
    quiet_start.import_tensorflow()
    from semiseg_tf import models  # noqa: F401
    from semiseg_tf.semisup import optim  # noqa: F401


# The commands started through semiseg_tf.options.run_command, which calls load() once it has
# answered --help, so that the help does not wait for TensorFlow. The others (paper.toy2d,
# paper.analysis, convert_torchvision) need load() here, for its quiet start.
_LOAD_AFTER_HELP = {f"semiseg_tf.{name}" for name in ("train", "prepare", "evaluate", "predict",
                                                      "export", "select")}


def _started_as_command_that_loads_later():
    """Whether this is `python -m` of one of _LOAD_AFTER_HELP. While Python locates the module,
    sys.argv[0] is "-m"."""
    argv = getattr(_sys, "orig_argv", [])
    return (_sys.argv[:1] == ["-m"] and "-m" in argv[:-1]
            and argv[argv.index("-m") + 1] in _LOAD_AFTER_HELP)


if not _started_as_command_that_loads_later():
    load()


def _api():
    import semiseg_tf.api  # noqa: F401  (a plain import statement: no attribute looked up)
    return _sys.modules["semiseg_tf.api"]


def __getattr__(name):
    """The public API (semiseg_tf/api.py), imported on first use: it brings in the commands'
    options, which define absl's global flags, and a plain `import semiseg_tf` must leave a
    program's own flag names free."""
    # `from semiseg_tf import submodule` asks here first: a submodule's name is not the API's.
    here = _os.path.dirname(__file__)
    if ((name.startswith("__") and name != "__all__") or _os.path.isdir(_os.path.join(here, name))
            or _os.path.exists(_os.path.join(here, f"{name}.py"))):
        raise AttributeError(f"module 'semiseg_tf' has no attribute {name!r}")
    api = _api()
    if name != "__all__" and name not in api.__all__:
        raise AttributeError(f"module 'semiseg_tf' has no attribute {name!r}")
    value = globals()[name] = getattr(api, name)    # found here from now on
    return value


def __dir__():
    return sorted(set(globals()) | set(_api().__all__))
