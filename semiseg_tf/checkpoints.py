"""The checkpoints of training runs and toy runs: what they hold and how an older one is restored.

A checkpoint holds the run's objects (networks, optimiser, counters) and, under `random_states`,
the random-number state of its networks' dropout layers (models.layers.random_state_variables), so
that a resumed run equals an uninterrupted one. Checkpoints written before that state was saved lack
it; they still resume, with fresh dropout streams, instead of failing on the missing entry.
"""
import re

import keras
import tensorflow as tf

from semiseg_tf.models.layers import random_state_variables
from semiseg_tf.run_files import CHECKPOINTS_DIR  # noqa: F401 (used from here)

RANDOM_STATES = "random_states"

# Printed on resuming from a checkpoint without random states.
FRESH_DROPOUT_NOTE = ("(a checkpoint from before dropout's random state was saved: dropout draws "
                      "afresh, so the run will not equal an uninterrupted one)")


class CheckpointMismatch(ValueError):
    """A checkpoint does not hold this program's objects; the message names the checkpoint."""


class CheckpointUnreadable(IOError):
    """A checkpoint's files cannot be read (truncated, corrupted, empty); the message says why."""


def first_line(error):
    """The first line of an error's message (at most 200 characters), for one-line reports."""
    text = getattr(error, "message", None) or str(error)
    # TF prefixes errors raised inside a function with the function's name in double braces.
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text.strip())
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


class RunCheckpoint:
    """The checkpoint of a run's `objects` and of the random states of the Keras models among them.

    `.checkpoint` is the tf.train.Checkpoint to hand to a tf.train.CheckpointManager; `.restore`
    reads one back, older ones included.
    """

    def __init__(self, **objects):
        self._objects = objects
        self._random_states = random_state_variables(
            *[value for value in objects.values() if isinstance(value, keras.Model)])
        self.checkpoint = tf.train.Checkpoint(**objects, **{RANDOM_STATES: self._random_states})

    def restore(self, path):
        """Restores the checkpoint `path`. Returns False when it has no random states (the objects
        are restored, the random streams start afresh: print FRESH_DROPOUT_NOTE). Raises
        CheckpointMismatch, one line, when it does not hold these objects (a checkpoint of another
        program or another network), and CheckpointUnreadable when its files cannot be read (a
        restore that fails half-way leaves some objects changed: restore another checkpoint
        before using them)."""
        try:
            names = [name for name, _ in tf.train.list_variables(path)]
        except (tf.errors.OpError, IndexError, ValueError) as error:
            raise CheckpointUnreadable(first_line(error)) from error
        exact = (not self._random_states
                 or any(name.startswith(RANDOM_STATES + "/") for name in names))
        checkpoint = self.checkpoint if exact else tf.train.Checkpoint(**self._objects)
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
        except (tf.errors.OpError, IndexError) as error:
            # The index was read, but the data behind it is short or corrupted.
            raise CheckpointUnreadable(first_line(error)) from error
        except (AssertionError, ValueError) as error:
            raise CheckpointMismatch(f"checkpoint {path}: does not hold this run's objects "
                                     f"({first_line(error)})") from error
        return exact
