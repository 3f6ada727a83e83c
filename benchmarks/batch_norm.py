"""Benchmark: what PyTorch's running variance costs (`layers.TorchBatchNorm` against Keras's layer).

  .venv/bin/python -m benchmarks.batch_norm

A `deeplab3plus_small` training step (batch 10, 161x161, plain Adam) with every batch norm training
(--nofreeze_bn), built once with Keras's BatchNormalization and once with TorchBatchNorm for the
networks' trained batch norms, alternating over 3 rounds in one process; median of 15 steps each.
"""
import time

import keras
import numpy as np
import tensorflow as tf

from semiseg_tf import models
from semiseg_tf.models import layers


def step_time(cls):
    """(median seconds per step, batch-norm layers of class `cls`) of a network built with `cls`."""
    layers._BN_CLASSES[layers.BN_TRAIN] = cls
    keras.utils.set_random_seed(0)
    net = models.build("deeplab3plus_small", 21, freeze_bn=False)
    opt = keras.optimizers.Adam(1e-4)
    x = tf.random.normal((10, 161, 161, 3))
    y = tf.random.uniform((10, 161, 161), 0, 21, tf.int32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                y, net(x, training=True), from_logits=True))
        grads = tape.gradient(loss, net.trainable_variables)
        opt.apply_gradients(zip(grads, net.trainable_variables))
        return loss
    step()
    times = []
    for _ in range(15):
        start = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), sum(isinstance(layer, cls) for layer in net._flatten_layers())


for round_ in range(3):
    for name, cls in [("keras BatchNormalization", keras.layers.BatchNormalization),
                      ("TorchBatchNorm", layers.TorchBatchNorm)]:
        seconds, count = step_time(cls)
        print(f"round {round_} {name}: {seconds * 1000:.1f} ms/step ({count} layers)", flush=True)
