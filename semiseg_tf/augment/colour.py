"""Colour augmentation of the student's view: torchvision's ColorJitter, then RandomGrayscale.

The authors' last commit (arXiv 2110.04487) jitters only the student's copy of an unlabelled sample,
after the geometric transforms: with probability `prob`, brightness, contrast and saturation factors
from U(1 - s, 1 + s) and a hue shift from U(-h, h) are applied in a random order; then the image is
made grey with probability `greyscale_prob`. The formulas are PIL's ImageEnhance ones that torchvision
uses, on floats in [0, 1], clipped after each operation:
  grey(x)        = 0.299 R + 0.587 G + 0.114 B           (ITU-R 601-2 luma, PIL's "L" mode)
  brightness b:  x * b                                  (blend with black)
  contrast c:    (x - mean(grey(x))) * c + mean(grey(x)) (blend with the mean grey level)
  saturation s:  (x - grey(x)) * s + grey(x)             (blend with the grey image)
  hue h:         hue rotated by h turns in HSV
Every draw comes from an explicit stateless seed, like the geometric augmentation.
"""
import dataclasses

import tensorflow as tf

_LUMA = (0.299, 0.587, 0.114)


@dataclasses.dataclass(frozen=True)
class ColourParams:
    """Strengths of the jitter (0 disables an operation) and the two probabilities."""
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    prob: float = 0.8
    greyscale_prob: float = 0.2


def grey(rgb):
    """[..., H, W, 3] -> [..., H, W, 1] luma."""
    return tf.reduce_sum(rgb * tf.constant(_LUMA, rgb.dtype), axis=-1, keepdims=True)


def adjust_brightness(rgb, factor):
    return tf.clip_by_value(rgb * factor, 0.0, 1.0)


def adjust_contrast(rgb, factor):
    mean = tf.reduce_mean(grey(rgb), axis=[-3, -2, -1], keepdims=True)
    return tf.clip_by_value((rgb - mean) * factor + mean, 0.0, 1.0)


def adjust_saturation(rgb, factor):
    luma = grey(rgb)
    return tf.clip_by_value((rgb - luma) * factor + luma, 0.0, 1.0)


def adjust_hue(rgb, delta):
    return tf.clip_by_value(tf.image.adjust_hue(rgb, delta), 0.0, 1.0)


def jitter_factors(seed, params):
    """(brightness, contrast, saturation, hue) as torchvision draws them, and the order of application."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    u = tf.random.stateless_uniform([4], seeds[0], -1.0, 1.0)
    strengths = tf.constant([params.brightness, params.contrast, params.saturation, params.hue],
                            tf.float32)
    # Multiplicative factors are 1 + s*u (torchvision clamps the lower end at 0); hue is a shift h*u.
    values = strengths * u + tf.constant([1.0, 1.0, 1.0, 0.0])
    values = tf.concat([tf.maximum(values[:3], 0.0), values[3:]], axis=0)
    order = tf.argsort(tf.random.stateless_uniform([4], seeds[1]))
    return values, order


def apply_jitter(rgb, values, order):
    """Applies the four operations with the given values in the given order (ops 0..3 as above)."""
    operations = [lambda x: adjust_brightness(x, values[0]), lambda x: adjust_contrast(x, values[1]),
                  lambda x: adjust_saturation(x, values[2]), lambda x: adjust_hue(x, values[3])]
    for position in range(4):
        rgb = tf.switch_case(order[position], [lambda op=op, x=rgb: op(x) for op in operations])
    return rgb


def random_colour(seed, rgb, params):
    """One sample's colour augmentation: `rgb` [H, W, 3] float32 in [0, 1] -> same shape and range."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    values, order = jitter_factors(seeds[0], params)
    u = tf.random.stateless_uniform([2], seeds[1])
    rgb = tf.cond(u[0] < params.prob, lambda: apply_jitter(rgb, values, order), lambda: rgb)
    return tf.cond(u[1] < params.greyscale_prob,
                   lambda: tf.broadcast_to(grey(rgb), tf.shape(rgb)), lambda: rgb)
