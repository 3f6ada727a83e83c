"""Gaussian blur of one image, the strong view's blur of weak-to-strong pseudo-labelling.

FixMatch and UniMatch blur the strong view with probability 0.5, with a standard deviation drawn from
U(0.1, 2.0) pixels (PIL's `ImageFilter.GaussianBlur(radius=sigma)`, whose radius is the standard
deviation). PIL approximates the Gaussian by three box blurs on 8-bit values; this is the exact
separable Gaussian on floats, with the kernel truncated at 3 standard deviations of the largest sigma
and the border pixels repeated outward, as PIL does. Every draw comes from an explicit stateless seed,
like the rest of the augmentation.
"""
import math

import tensorflow as tf

SIGMA_RANGE = (0.1, 2.0)


def kernel_radius(max_sigma):
    """Half the kernel's width: 3 standard deviations of the largest sigma, in whole pixels."""
    return int(math.ceil(3.0 * max_sigma))


def gaussian_kernel(sigma, radius):
    """[2 radius + 1] weights exp(-i^2 / (2 sigma^2)), summing to 1 (a scalar float32 sigma)."""
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    weights = tf.exp(-tf.square(offsets) / (2.0 * tf.square(sigma)))
    return weights / tf.reduce_sum(weights)


def _replicate_pad(rgb, radius, axis):
    """Pads [H, W, C] by `radius` on both sides of `axis` with copies of the border pixels."""
    size = tf.shape(rgb)[axis]
    indices = tf.clip_by_value(tf.range(-radius, size + radius), 0, size - 1)
    return tf.gather(rgb, indices, axis=axis)


def gaussian_blur(rgb, sigma, radius=kernel_radius(SIGMA_RANGE[1])):
    """Blurs `rgb` [H, W, C] float32 with standard deviation `sigma` pixels: a vertical and a horizontal
    pass of one 1-D kernel, each channel on its own."""
    channels = rgb.shape[-1]
    kernel = gaussian_kernel(tf.cast(sigma, tf.float32), radius)
    vertical = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, channels, 1])
    horizontal = tf.reshape(vertical, [1, -1, channels, 1])
    padded = _replicate_pad(_replicate_pad(rgb, radius, 0), radius, 1)[tf.newaxis]
    out = tf.nn.depthwise_conv2d(padded, vertical, [1, 1, 1, 1], "VALID")
    out = tf.nn.depthwise_conv2d(out, horizontal, [1, 1, 1, 1], "VALID")
    return out[0]


def random_blur(seed, rgb, prob=0.5, sigma_range=SIGMA_RANGE):
    """One sample's blur: with probability `prob`, sigma ~ U(sigma_range); `rgb` [H, W, C] float32."""
    u = tf.random.stateless_uniform([2], seed)
    sigma = sigma_range[0] + (sigma_range[1] - sigma_range[0]) * u[1]
    radius = kernel_radius(sigma_range[1])
    return tf.cond(u[0] < prob, lambda: gaussian_blur(rgb, sigma, radius), lambda: rgb)
