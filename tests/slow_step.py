"""Run by test_robustness.py: `python tests/slow_step.py SECONDS [train flags]` is
`python -m semiseg_tf.train [train flags]` with every training step made SECONDS longer inside the
step's own graph, so that signals arrive while the main thread is held in one TensorFlow call (as
during a real step of minutes), not between steps.

The wait is Python (a numpy function), which TensorFlow may run on the calling thread: the signals
are blocked in that thread while it waits, as they are in effect inside a long C++ call (the
interpreter cannot run a handler there), so that Python's own handling is not woken by them.
"""
import signal
import sys
import time

import numpy as np
import tensorflow as tf

from semiseg_tf import config, options, train
from semiseg_tf.semisup import losses

SECONDS = float(sys.argv.pop(1))
_cross_entropy = losses.cross_entropy


def wait():
    print(f"slow step: waiting {SECONDS:g} s", flush=True)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        time.sleep(SECONDS)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return np.float32(0)


def slow_cross_entropy(logits, labels, *weighting):
    return (_cross_entropy(logits, labels, *weighting)
            + tf.numpy_function(wait, [], tf.float32, stateful=True))


if __name__ == "__main__":
    losses.cross_entropy = slow_cross_entropy
    options.run_command(train.main, config.TRAINING_TOPICS)
