"""The embedded synthetic dataset: textured shapes on textured backgrounds, made from a seed.

It is built to have the two properties the paper finds in real segmentation data (supplement B):
- high intra-class variance: an object's colours are drawn from the same distribution for every class,
  its size, orientation and texture scale vary, and one time in three it wears another class's texture,
  so no single local cue names the class; the shape and the usual texture together do;
- no low-density gap at class boundaries: edges are anti-aliased, blurred and noisy, so the pixels on
  either side of a boundary blend smoothly into each other.
Objects overlap (later ones occlude earlier ones). Everything is numpy, deterministic from the seed.
"""
import numpy as np
import tensorflow as tf

from semiseg_tf.data import base

CLASS_NAMES = ("background", "disk", "square", "triangle", "ring", "cross")
_TEXTURES = ("stripes", "checker", "dots", "gradient", "rings")  # the usual texture of classes 1..5
_TEXTURE_SWAP_PROB = 1 / 3


def _smooth_noise(rng, size, cells):
    """Low-frequency noise in [0, 1]: a random `cells` x `cells` grid, bilinearly upsampled."""
    grid = rng.random((cells + 1, cells + 1))
    coords = np.linspace(0, cells, size)
    i = np.minimum(coords.astype(int), cells - 1)
    f = coords - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _texture(rng, kind, ys, xs, cy, cx):
    """A [size, size] pattern in [0, 1]."""
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(3.0, 7.0)
    u = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
    v = -(xs - cx) * np.sin(angle) + (ys - cy) * np.cos(angle)
    if kind == "stripes":
        return 0.5 + 0.5 * np.sin(2 * np.pi * u / period)
    if kind == "checker":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float64)
    if kind == "dots":
        return (rng.random(xs.shape) < 0.3).astype(np.float64)
    if kind == "gradient":
        return np.clip(0.5 + u / (4 * period), 0, 1)
    # concentric rings around the object centre
    return 0.5 + 0.5 * np.cos(2 * np.pi * np.hypot(u, v) / period)


def _signed_distance(kind, ys, xs, cy, cx, radius, angle):
    """Signed distance in pixels to the shape's outline: negative inside."""
    dy, dx = ys - cy, xs - cx
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    if kind == 1:    # disk
        return np.hypot(dx, dy) - radius
    if kind == 2:    # square
        return np.maximum(np.abs(u), np.abs(v)) - radius * 0.85
    if kind == 3:    # triangle: three half-planes
        normals = [angle + k * 2 * np.pi / 3 for k in range(3)]
        return np.max([dx * np.cos(a) + dy * np.sin(a) for a in normals], axis=0) - radius * 0.55
    if kind == 4:    # ring
        return np.abs(np.hypot(dx, dy) - radius * 0.75) - radius * 0.3
    # cross: union of two bars
    bar_u = np.maximum(np.abs(u) - radius, np.abs(v) - radius * 0.3)
    bar_v = np.maximum(np.abs(v) - radius, np.abs(u) - radius * 0.3)
    return np.minimum(bar_u, bar_v)


def make_scene(rng, size):
    """Draws one scene.

    Returns:
      (image uint8 [size, size, 3], label uint8 [size, size]).
    """
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    colour_a, colour_b = rng.random(3), rng.random(3)
    blend = _smooth_noise(rng, size, 3)[..., None]
    detail = _texture(rng, _TEXTURES[rng.integers(len(_TEXTURES))], ys, xs, size / 2, size / 2)
    image = colour_a * blend + colour_b * (1 - blend)
    image = image * (0.75 + 0.25 * detail[..., None])
    label = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(2, 5)):
        kind = int(rng.integers(1, len(CLASS_NAMES)))
        radius = rng.uniform(0.09, 0.22) * size
        cy, cx = rng.uniform(0.1, 0.9, 2) * size
        distance = _signed_distance(kind, ys, xs, cy, cx, radius, rng.uniform(0, 2 * np.pi))
        # Anti-aliased coverage: boundary pixels mix both sides, so there is no gap between classes.
        coverage = np.clip(0.5 - distance / 1.5, 0, 1)[..., None]
        texture = _TEXTURES[kind - 1]
        if rng.random() < _TEXTURE_SWAP_PROB:
            texture = _TEXTURES[rng.integers(len(_TEXTURES))]
        pattern = _texture(rng, texture, ys, xs, cy, cx)[..., None]
        fg_a, fg_b = rng.random(3), rng.random(3)
        fill = fg_a * pattern + fg_b * (1 - pattern)
        image = image * (1 - coverage) + fill * coverage
        label[coverage[..., 0] >= 0.5] = kind
    image = image + rng.normal(0, 0.04, image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), label


def make_scenes(seed, count, size):
    """`count` scenes from one seed, as stacked arrays ([count, size, size, 3], [count, size, size])."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, size, size, 3), np.uint8)
    labels = np.empty((count, size, size), np.uint8)
    for i in range(count):
        images[i], labels[i] = make_scene(rng, size)
    return images, labels


class SyntheticSource(base.DataSource):
    """The embedded dataset; train and validation scenes come from separate seed streams."""
    name = "synthetic"
    class_names = CLASS_NAMES

    def __init__(self, num_train=1000, num_val=200, image_size=64, seed=0):
        self.image_size = image_size
        # Separate streams: changing the training set size does not change the validation scenes.
        self.train_images, self.train_labels = make_scenes([seed, 0], num_train, image_size)
        self.val_images, self.val_labels = make_scenes([seed, 1], num_val, image_size)
        self.read_train = base.in_memory_reader(self.train_images, self.train_labels)

    @property
    def num_train(self):
        return len(self.train_images)

    def read_train(self, index):  # replaced per instance in __init__
        raise NotImplementedError

    def validation(self):
        return tf.data.Dataset.from_tensor_slices((self.val_images, self.val_labels))
