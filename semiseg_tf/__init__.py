"""semiseg_tf: semi-supervised semantic segmentation in TensorFlow 2 / Keras 3."""
__version__ = "0.1.0"

import os as _os
import sys as _sys

# TensorFlow's C++ logging below errors hides the progress output of the command-line tools; users
# can still ask for it by setting the variable themselves (0 also keeps the start-up notices).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load():
    """Imports TensorFlow without its start-up notices, then every module whose classes Keras may
    meet in a saved file (each registers its classes when imported), so that
    `keras.saving.load_model("network.keras")` works after a plain `import semiseg_tf`."""
    from semiseg_tf import quiet_start
    quiet_start.import_tensorflow()
    from semiseg_tf import models
    from semiseg_tf.semisup import optim
    models.available(), optim.__name__      # loaded even where a command named them lazily


# The commands started through semiseg_tf.options.run_command, which calls load() once it has
# answered --help, so that the help does not wait for TensorFlow. The others (toy2d, analysis,
# convert_torchvision) need load() here, for its quiet start.
_LOAD_AFTER_HELP = {f"semiseg_tf.{name}" for name in ("train", "prepare", "evaluate", "predict",
                                                      "export")}


def _started_as_command_that_loads_later():
    """Whether this is `python -m` of one of _LOAD_AFTER_HELP. While Python locates the module,
    sys.argv[0] is "-m"."""
    argv = getattr(_sys, "orig_argv", [])
    return (_sys.argv[:1] == ["-m"] and "-m" in argv[:-1]
            and argv[argv.index("-m") + 1] in _LOAD_AFTER_HELP)


if not _started_as_command_that_loads_later():
    load()
