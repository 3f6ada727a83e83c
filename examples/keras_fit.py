"""Semi-supervised training from your own Python, with Keras's `fit` and its callbacks.

    python examples/keras_fit.py [--workdir=DIR] [--steps_per_epoch=N] [--epochs=N]

Your data as `tf.data` (here a tiny made-up set: bright squares on noise), a mean teacher with
CutMix consistency, Keras's TensorBoard and BackupAndRestore callbacks. The first `fit` is
interrupted after its first epoch (as a crash or Ctrl-C would); the same `fit` again resumes from
the backup. Then the teacher is scored with `evaluate`, saved as `network.keras`, loaded back
and used. The test suite runs this file (tests/test_python_api.py).
"""
import argparse
import os

import keras
import numpy as np
import tensorflow as tf

import semiseg_tf


def make_data(count, seed, size=48):
    """uint8 images with one bright square each, and its mask (class 1 inside, 0 outside)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 96, (count, size, size, 3), dtype=np.uint8)
    masks = np.zeros((count, size, size), np.uint8)
    for image, mask in zip(images, masks):
        top, left = rng.integers(0, size - 16, 2)
        side = rng.integers(8, 16)
        image[top:top + side, left:left + side] += 128
        mask[top:top + side, left:left + side] = 1
    return images, masks


class Interrupt(keras.callbacks.Callback):
    """Stops the process's training at the end of epoch `epoch`, as a crash would."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"interrupted after epoch {epoch + 1}")


def new_model():
    student = semiseg_tf.build_network("tiny_unet", num_classes=2)
    teacher = semiseg_tf.build_network("tiny_unet", num_classes=2)
    model = semiseg_tf.MeanTeacher(student, teacher, semiseg_tf.CutMix(), cons_weight=1.0,
                                   conf_thresh=0.97, teacher_alpha=0.99)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def main(workdir, steps_per_epoch, epochs):
    keras.utils.set_random_seed(0)
    images, masks = make_data(40, seed=0)
    labelled = tf.data.Dataset.from_tensor_slices((images[:8], masks[:8]))    # 8 labelled
    unlabelled = tf.data.Dataset.from_tensor_slices(images)                    # all 40 unlabelled
    val_images, val_masks = make_data(8, seed=1)
    validation = semiseg_tf.evaluation_batches(
        tf.data.Dataset.from_tensor_slices((val_images, val_masks)), batch_size=8)

    model = new_model()
    batches = semiseg_tf.training_batches(labelled, unlabelled, model, crop_size=(32, 32),
                                          batch_size=4, augmentation=semiseg_tf.GeometricParams(
                                              crop_size=(32, 32), hflip=True))
    callbacks = [keras.callbacks.TensorBoard(os.path.join(workdir, "tensorboard")),
                 keras.callbacks.BackupAndRestore(os.path.join(workdir, "backup"))]
    try:
        model.fit(batches, steps_per_epoch=steps_per_epoch, epochs=epochs,
                  validation_data=validation, callbacks=callbacks + [Interrupt(epoch=0)],
                  verbose=2)
    except KeyboardInterrupt as stop:
        print(stop)

    # A new process would start here: the same model, the same fit; BackupAndRestore restores
    # the student, the teacher, the optimiser and the epoch, and training goes on from there.
    model = new_model()
    history = model.fit(batches, steps_per_epoch=steps_per_epoch, epochs=epochs,
                        validation_data=validation, callbacks=callbacks, verbose=2)
    print("resumed: epochs", [e + 1 for e in history.epoch], "optimiser steps",
          int(model.optimizer.iterations))

    scores = model.evaluate(validation, return_dict=True, verbose=0)
    print(f"teacher: mIoU {100 * scores['miou']:.2f}%, pixel accuracy "
          f"{100 * scores['pixel_accuracy']:.2f}%")

    path = os.path.join(workdir, "network.keras")
    model.teacher.save(path)
    network = keras.saving.load_model(path)
    segmenter = semiseg_tf.Segmenter(network, model.rgb_mean, model.rgb_std,
                                     semiseg_tf.input_multiple("tiny_unet"))
    labels = segmenter.predict(val_images)["labels"].numpy()
    same = np.array_equal(labels, np.argmax(model.predict(val_images, verbose=0), axis=-1))
    print(f"network.keras loaded: {labels.shape[0]} label maps, the same as the model's: {same}")
    return model, history, scores


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/keras_fit")
    parser.add_argument("--steps_per_epoch", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=4)
    arguments = parser.parse_args()
    main(arguments.workdir, arguments.steps_per_epoch, arguments.epochs)
