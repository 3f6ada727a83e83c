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


def _started_as_command():
    """Whether this is `python -m semiseg_tf.COMMAND`: the command loads what it needs once it has
    answered --help (semiseg_tf.options.run_command), so that the help does not wait for
    TensorFlow. While Python locates the module, sys.argv[0] is "-m"."""
    argv = getattr(_sys, "orig_argv", [])
    return (_sys.argv[:1] == ["-m"] and "-m" in argv[:-1]
            and argv[argv.index("-m") + 1].startswith("semiseg_tf."))


if not _started_as_command():
    load()
