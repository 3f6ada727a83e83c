"""semiseg_tf: semi-supervised semantic segmentation in TensorFlow 2 / Keras 3."""
__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ logging below errors hides the progress output of the command-line tools; users
# can still ask for it by setting the variable themselves (0 also keeps the start-up notices).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from semiseg_tf import quiet_start as _quiet_start  # noqa: E402

_quiet_start.import_tensorflow()

# Every class of this package that Keras may meet in a saved file registers itself when its module
# is imported; importing them here makes `keras.saving.load_model("network.keras")` work after a
# plain `import semiseg_tf`.
from semiseg_tf import models as _models  # noqa: E402,F401
from semiseg_tf.semisup import optim as _optim  # noqa: E402,F401
