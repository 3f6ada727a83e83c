"""semiseg_tf: semi-supervised semantic segmentation in TensorFlow 2 / Keras 3."""
__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notices) hides the progress output of
# the command-line tools; users can still ask for it by setting the variable themselves.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
