"""semiseg_tf.checkpoints: dropout's random state is saved, older checkpoints without it still
resume, and a checkpoint of other objects is refused in one line."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from semiseg_tf import checkpoints


def _net(units=64):
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dropout(0.5, seed=1)(keras.layers.Dense(units)(inputs)))


def _draw(net):
    """Dropout's next mask on a batch of ones (it advances the layer's random state)."""
    return net(np.ones((1, 4), np.float32), training=True).numpy() != 0


def test_checkpoint_restores_weights_and_dropout_state(tmp_path):
    saved = _net()
    _draw(saved)
    path = checkpoints.RunCheckpoint(net=saved).checkpoint.save(str(tmp_path / "ck"))
    expected = _draw(saved)            # the mask drawn right after the save
    restored = _net()
    assert checkpoints.RunCheckpoint(net=restored).restore(path) is True
    for a, b in zip(saved.weights, restored.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(_draw(restored), expected)


def test_checkpoint_without_random_states_still_restores(tmp_path):
    # As written before the random states were saved: the weights alone.
    saved = _net()
    path = tf.train.Checkpoint(net=saved).save(str(tmp_path / "old"))
    restored = _net()
    assert checkpoints.RunCheckpoint(net=restored).restore(path) is False
    for a, b in zip(saved.weights, restored.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("other", ["wider layer", "other objects"])
def test_checkpoint_of_other_objects_is_refused_in_one_line(tmp_path, other):
    saved = _net()
    path = checkpoints.RunCheckpoint(net=saved).checkpoint.save(str(tmp_path / "ck"))
    wrong = _net(units=65)
    objects = dict(net=wrong) if other == "wider layer" else dict(student=wrong)
    with pytest.raises(checkpoints.CheckpointMismatch) as caught:
        checkpoints.RunCheckpoint(**objects).restore(path)
    message = str(caught.value)
    assert message.startswith(f"checkpoint {path}: does not hold this run's objects")
    assert "\n" not in message
