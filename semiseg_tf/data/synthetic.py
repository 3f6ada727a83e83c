"""The embedded synthetic dataset: textured shapes on tinted grey backgrounds, made from a seed.

Six classes: background, disk, square, triangle, ring, cross. Each object class has three cues, none
reliable alone, so a network must combine them, and a few labelled images cover their variety sparsely:
- shape, at random size (13-28% of the image side), position and rotation, often partly occluded;
- texture (stripes, checker, dots, grid, rings), at random scale (4-9 px period) and orientation;
- colour: the hue is drawn around the class's hue with a spread (0.07) that makes neighbouring
  classes' bands overlap (their centres are 0.2 apart), at random saturation and brightness.
It has the two properties the paper finds in real segmentation data (supplement B): high intra-class
variance, as above, and no low-density gap at class boundaries: edges are anti-aliased (boundary
pixels blend both sides) and pixel noise is added everywhere, so pixel content changes smoothly
across a boundary. Everything is numpy, deterministic from the seed.
"""
import colorsys

import numpy as np
import tensorflow as tf

from semiseg_tf.data import base

CLASS_NAMES = ("background", "disk", "square", "triangle", "ring", "cross")
_TEXTURES = ("stripes", "checker", "dots", "grid", "rings")  # the texture of classes 1..5
_HUE_STD = 0.07            # spread of an object's hue around its class's; class hues are 0.2 apart
_BACKGROUND_TINT = 0.3     # at most +-30% per channel around a grey
_BACKGROUND_TEXTURE = 0.1  # contrast of the background's faint texture


def _smooth_noise(rng, size, cells):
    """Low-frequency noise in [0, 1]: a random `cells` x `cells` grid, bilinearly upsampled."""
    grid = rng.random((cells + 1, cells + 1))
    coords = np.linspace(0, cells, size)
    i = np.minimum(coords.astype(int), cells - 1)
    f = coords - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _texture(rng, kind, ys, xs, cy, cx):
    """A [size, size] pattern in [0, 1], with random orientation and scale."""
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(4.0, 9.0)
    u = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
    v = -(xs - cx) * np.sin(angle) + (ys - cy) * np.cos(angle)
    if kind == "stripes":
        return 0.5 + 0.5 * np.sin(2 * np.pi * u / period)
    if kind == "checker":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float64)
    if kind == "dots":      # a lattice of round spots
        du = (u / period) % 1 - 0.5
        dv = (v / period) % 1 - 0.5
        return (np.hypot(du, dv) < 0.3).astype(np.float64)
    if kind == "grid":      # thin lines both ways
        du = np.abs((u / period) % 1 - 0.5)
        dv = np.abs((v / period) % 1 - 0.5)
        return (np.maximum(du, dv) > 0.35).astype(np.float64)
    # concentric rings around the object centre
    return 0.5 + 0.5 * np.cos(2 * np.pi * np.hypot(u, v) / period)


def _object_colours(rng, kind, hue_by_class=True):
    """Two colours of one object: hue from a broad band per class that overlaps its neighbours'
    (`hue_by_class`), or from the band of a class drawn at random, whatever the object's."""
    band = kind if hue_by_class else int(rng.integers(1, len(CLASS_NAMES)))
    hue = (band / 5 + rng.normal(0, _HUE_STD)) % 1.0
    saturation, value = rng.uniform(0.45, 1.0), rng.uniform(0.5, 1.0)
    light = np.array(colorsys.hsv_to_rgb(hue, saturation, value))
    return light, light * rng.uniform(0.25, 0.7)


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


def make_scene(rng, size, rare=None, hue_by_class=True):
    """Draws one scene. `rare`: None, or (class, keep): an object of that class is drawn as such
    with probability `keep`, and otherwise as one of the other classes (uniformly).
    `hue_by_class=False`: objects take their hue from a class drawn apart from theirs, so colour
    says nothing of the class (shape and texture still do).

    Returns:
      (image uint8 [size, size, 3], label uint8 [size, size]).
    """
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    # Background: desaturated colours (greys with a tint), so objects stand out by colour and texture.
    grey_a, grey_b = rng.uniform(0.15, 0.85, 2)
    colour_a = grey_a * (1 + rng.uniform(-_BACKGROUND_TINT, _BACKGROUND_TINT, 3))
    colour_b = grey_b * (1 + rng.uniform(-_BACKGROUND_TINT, _BACKGROUND_TINT, 3))
    blend = _smooth_noise(rng, size, 3)[..., None]
    detail = _texture(rng, _TEXTURES[rng.integers(len(_TEXTURES))], ys, xs, size / 2, size / 2)
    image = colour_a * blend + colour_b * (1 - blend)
    image = image * (1 - _BACKGROUND_TEXTURE + _BACKGROUND_TEXTURE * detail[..., None])
    label = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(2, 5)):
        kind = int(rng.integers(1, len(CLASS_NAMES)))
        if rare is not None and kind == rare[0] and rng.random() >= rare[1]:
            kind = int(rng.integers(1, len(CLASS_NAMES) - 1))
            kind += kind >= rare[0]
        radius = rng.uniform(0.13, 0.28) * size
        cy, cx = rng.uniform(0.1, 0.9, 2) * size
        distance = _signed_distance(kind, ys, xs, cy, cx, radius, rng.uniform(0, 2 * np.pi))
        # Anti-aliased coverage: boundary pixels mix both sides, so there is no gap between classes.
        coverage = np.clip(0.5 - distance / 1.5, 0, 1)[..., None]
        pattern = _texture(rng, _TEXTURES[kind - 1], ys, xs, cy, cx)[..., None]
        fg_a, fg_b = _object_colours(rng, kind, hue_by_class)
        fill = fg_a * pattern + fg_b * (1 - pattern)
        image = image * (1 - coverage) + fill * coverage
        label[coverage[..., 0] >= 0.5] = kind
    image = image + rng.normal(0, 0.04, image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), label


def make_scenes(seed, count, size, rare=None, hue_by_class=True):
    """`count` scenes from one seed, as stacked arrays ([count, size, size, 3], [count, size, size]);
    `rare` and `hue_by_class` as `make_scene`'s."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, size, size, 3), np.uint8)
    labels = np.empty((count, size, size), np.uint8)
    for i in range(count):
        images[i], labels[i] = make_scene(rng, size, rare, hue_by_class)
    return images, labels


class SyntheticSource(base.DataSource):
    """The embedded dataset; train and validation scenes come from separate seed streams.

    `representative_split`: the labelled subset is chosen so its class shares match the whole set's
    (`base.representative_split`), as a benchmark's labelled subset should be; False takes the authors'
    plain permutation. `rare_class`, `rare_keep`: that class (1-5; 0 for none) keeps only this share
    of its objects, in training and validation scenes alike (a rare class, for class weights).
    """
    name = "synthetic"
    class_names = CLASS_NAMES

    def __init__(self, num_train=1000, num_val=200, image_size=64, seed=0, representative_split=True,
                 rare_class=0, rare_keep=1.0):
        self.fixed_image_size = (image_size, image_size)
        self.representative_split = representative_split
        rare = (int(rare_class), float(rare_keep)) if rare_class else None
        # Separate streams: changing the training set size does not change the validation scenes.
        self.train_images, self.train_labels = make_scenes([seed, 0], num_train, image_size, rare)
        self.val_images, self.val_labels = make_scenes([seed, 1], num_val, image_size, rare)
        self._read = base.in_memory_reader(self.train_images, self.train_labels)

    @property
    def num_train(self):
        return len(self.train_images)

    def read_train(self, index):
        return self._read(index)

    def class_pixel_counts(self):
        return np.stack([np.bincount(label.ravel(), minlength=len(CLASS_NAMES))
                         for label in self.train_labels]).astype(np.int64)

    def labelled_split(self, n_sup, split_seed):
        if not self.representative_split:
            return super().labelled_split(n_sup, split_seed)
        return base.representative_split(self.class_pixel_counts(), n_sup, split_seed)

    def validation(self):
        return tf.data.Dataset.from_tensor_slices((self.val_images, self.val_labels))


def write_samples(output, count, split="val", seed=0, image_size=64):
    """Writes the first `count` scenes of a split as files, output/images/SPLIT_NNNN.png and
    output/masks/SPLIT_NNNN.png (class ids), a folder that predict and evaluate read. Returns the
    count."""
    import os

    from semiseg_tf import visualise
    from semiseg_tf.files import atomic_write_bytes, png_bytes
    images, labels = make_scenes([seed, 1 if split == "val" else 0], count, image_size)
    for folder in ("images", "masks"):
        os.makedirs(os.path.join(output, folder), exist_ok=True)
    for index, (image, label) in enumerate(zip(images, labels)):
        name = f"{split}_{index:04d}.png"
        atomic_write_bytes(os.path.join(output, "images", name), png_bytes(image))
        # A palette PNG: its values are the class ids, and it shows in the Pascal VOC colours.
        atomic_write_bytes(os.path.join(output, "masks", name), visualise.label_png(label))
    return count


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(
        description="Write scenes of the embedded synthetic dataset as PNG files (images/ and "
                    "masks/), e.g. to try predict and evaluate on files.")
    parser.add_argument("--output", required=True, help="Folder to write images/ and masks/ into.")
    parser.add_argument("--count", type=int, default=8, help="Number of scenes (the first ones of "
                        "the split, as training sees them).")
    parser.add_argument("--split", choices=("val", "train"), default="val",
                        help="Which split's scenes.")
    parser.add_argument("--synthetic_seed", type=int, default=0,
                        help="The dataset's seed (training's --synthetic_seed).")
    parser.add_argument("--synthetic_image_size", type=int, default=64,
                        help="Side of the images (training's --synthetic_image_size).")
    args = parser.parse_args()
    if args.count <= 0:
        parser.error(f"--count={args.count}: must be positive")
    write_samples(args.output, args.count, args.split, args.synthetic_seed, args.synthetic_image_size)
    print(f"wrote {args.count} {args.split} scenes to {args.output}/images and {args.output}/masks")
