"""The checkpoints of training runs and toy runs: what they hold and how an older one is restored.

A checkpoint holds the run's objects (networks, optimiser, counters) and, under `random_states`,
the random-number state of its networks' dropout layers (models.layers.random_state_variables), so
that a resumed run equals an uninterrupted one. Checkpoints written before that state was saved lack
it; they still resume, with fresh dropout streams, instead of failing on the missing entry.
"""
import keras
import tensorflow as tf

from semiseg_tf.models.layers import random_state_variables

RANDOM_STATES = "random_states"

# Printed on resuming from a checkpoint without random states.
FRESH_DROPOUT_NOTE = ("(a checkpoint from before dropout's random state was saved: dropout draws "
                      "afresh, so the run will not equal an uninterrupted one)")


class CheckpointMismatch(ValueError):
    """A checkpoint does not hold this program's objects; the message names the checkpoint."""


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
        program or another network)."""
        names = [name for name, _ in tf.train.list_variables(path)]
        exact = (not self._random_states
                 or any(name.startswith(RANDOM_STATES + "/") for name in names))
        checkpoint = self.checkpoint if exact else tf.train.Checkpoint(**self._objects)
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
        except (AssertionError, ValueError) as error:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointMismatch(f"checkpoint {path}: does not hold this run's objects "
                                     f"({detail[:200]})") from error
        return exact
