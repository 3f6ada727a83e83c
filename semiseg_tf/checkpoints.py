"""The checkpoints of training runs and toy runs: what they hold and how an older one is restored.

A checkpoint holds the run's objects (networks, optimiser, counters) and, under `random_states`,
the random-number state of its dropout layers (models.layers.random_state_variables), so that a
resumed run equals an uninterrupted one. Checkpoints written before that state was saved lack it;
they still resume, with fresh dropout streams, instead of failing on the missing entry.
"""
import tensorflow as tf

RANDOM_STATES = "random_states"


class CheckpointMismatch(ValueError):
    """A checkpoint does not hold this program's objects; the message names the checkpoint."""


def make(random_states, **objects):
    """The tf.train.Checkpoint of `objects` and the layers' `random_states`."""
    return tf.train.Checkpoint(**objects, **{RANDOM_STATES: random_states})


def restore(path, random_states, **objects):
    """Restores `objects` and `random_states` from the checkpoint `path` (as written by a
    checkpoint from `make`). Returns False when the checkpoint has no random states (the objects are
    restored, the random streams start afresh). Raises CheckpointMismatch, one line, when it does
    not hold these objects (a checkpoint of another program or another network)."""
    names = [name for name, _ in tf.train.list_variables(path)]
    has_random_states = any(name.startswith(RANDOM_STATES + "/") for name in names)
    if has_random_states or not random_states:
        checkpoint = make(random_states, **objects)
    else:
        checkpoint = tf.train.Checkpoint(**objects)
    try:
        checkpoint.restore(path).assert_existing_objects_matched()
    except (AssertionError, ValueError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointMismatch(f"checkpoint {path}: does not hold this run's objects ({detail[:200]})"
                                 ) from error
    return has_random_states or not random_states
