"""TensorFlow without its start-up chatter.

Importing TensorFlow and probing its devices print, before any logging is configured and whatever
TF_CPP_MIN_LOG_LEVEL says, lines about CUDA drivers, oneDNN and CPU features, twice (two native
libraries each log them). They bury a command's first lines and are harmless. `import_tensorflow()`
imports it with the process's standard error (file descriptor 2, where native code writes) sent to a
temporary file, then restores it and writes back every captured line that is not one of those
notices, so a real warning or error still shows. TF_CPP_MIN_LOG_LEVEL=0 in the environment keeps everything.
"""
import contextlib
import os
import re
import sys
import tempfile

# The notices TensorFlow 2.21 prints when it loads on a machine with or without a GPU.
_CHATTER = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|"
    r"cuda drivers|cudart_stub|cuInit|cuda_executor|cuda_dnn|cuda_fft|cuda_blas|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|computation_placer|cpu_feature_guard|"
    r"To enable the following instructions|rebuild TensorFlow with the appropriate compiler|"
    r"TF-TRT Warning|absl::InitializeLog")


@contextlib.contextmanager
def _filtered_stderr():
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:             # no standard error to filter
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(True)
                    if not _CHATTER.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_tensorflow():
    """Imports TensorFlow and Keras (once), keeping their start-up notices off the terminal."""
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        import tensorflow  # noqa: F401
        return
    with _filtered_stderr():
        import keras  # noqa: F401
        import tensorflow
        # Probing for GPUs prints the CUDA notices of a machine without one; logical devices are
        # not set up by this, so --cpu_devices can still split the CPU afterwards.
        tensorflow.config.list_physical_devices("GPU")
