"""Box masks for CutMix and Cutout, drawn per sample with stateless random ops.

Follows the authors' `BoxMaskGenerator` step by step, with one deliberate difference:
boxes that cross the image edge (`within_bounds=False`) are clipped instead of silently dropped.

Randomness comes from an explicit `seed` (a shape-[2] int tensor) so that each sample of each stream
gets its own mask, however many tf.data workers run in parallel (the authors' masks repeated across
their 4 DataLoader workers).
"""
import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class BoxMaskParams:
    """How box masks are drawn.

    Attributes:
      prop_range: (low, high) of the area fraction (or, with `by_size`, of each side fraction).
      n_boxes: boxes per mask, combined by xor; each gets `1 / n_boxes` of the drawn area.
      random_aspect_ratio: draw the aspect ratio (`prop**u`) instead of using the image's.
      by_size: draw side fractions directly instead of an area fraction.
      within_bounds: boxes lie wholly inside the image; otherwise they are centred anywhere and clipped.
      invert: start from zeros so the mask is 1 inside the boxes (the authors' default).
      authors_outside_bounds: with `within_bounds=False`, reproduce the authors' bug: a
        negative start is used as a Python slice start, so a box crossing the top or left edge
        becomes empty (or a sliver at the far edge) instead of clipped.
    """
    prop_range: tuple = (0.5, 0.5)
    n_boxes: int = 1
    random_aspect_ratio: bool = True
    by_size: bool = False
    within_bounds: bool = True
    invert: bool = True
    authors_outside_bounds: bool = False


def box_corners(seed, height, width, params):
    """Draws the boxes of one mask.

    Args:
      seed: int32/int64 tensor of shape [2].
      height, width: mask size (Python ints or scalar tensors).
      params: a `BoxMaskParams`.

    Returns:
      int32 tensor [n_boxes, 4] of (y0, x0, y1, x1), half-open, already clipped to the image.
    """
    n = params.n_boxes
    low, high = (float(v) for v in params.prop_range)
    seeds = tf.random.experimental.stateless_split(seed, 4)
    if not params.by_size:
        prop = tf.random.stateless_uniform([n], seeds[0], low, high, dtype=tf.float64)
        if params.random_aspect_ratio:
            u = tf.random.stateless_uniform([n], seeds[1], dtype=tf.float64)
            # prop**u; log(0) would give NaN, so props of zero get side 0 below.
            safe_prop = tf.where(prop > 0, prop, tf.ones_like(prop))
            y_prop = tf.exp(u * tf.math.log(safe_prop))
            x_prop = safe_prop / y_prop
        else:
            y_prop = x_prop = tf.sqrt(prop)
        zero = prop <= 0
        y_prop = tf.where(zero, tf.zeros_like(y_prop), y_prop)
        x_prop = tf.where(zero, tf.zeros_like(x_prop), x_prop)
    else:
        y_prop = tf.random.stateless_uniform([n], seeds[0], low, high, dtype=tf.float64)
        if params.random_aspect_ratio:
            x_prop = tf.random.stateless_uniform([n], seeds[1], low, high, dtype=tf.float64)
        else:
            x_prop = y_prop
    scale = (1.0 / n) ** 0.5
    extent = tf.cast(tf.stack([height, width]), tf.float64)                  # [2]
    sizes = tf.round(tf.stack([y_prop, x_prop], axis=-1) * scale * extent)   # [n, 2], half to even
    if params.within_bounds:
        u = tf.random.stateless_uniform([n, 2], seeds[2], dtype=tf.float64)
        start = tf.round((extent - sizes) * u)
        end = start + sizes
    else:
        u = tf.random.stateless_uniform([n, 2], seeds[3], dtype=tf.float64)
        centre = tf.round(extent * u)
        start = centre - sizes / 2
        end = centre + sizes / 2
    # int() truncation toward zero, as the reference; then clip to the image (the reference drops them).
    start, end = tf.cast(start, tf.int32), tf.cast(end, tf.int32)
    limit = tf.cast(extent, tf.int32)
    if params.authors_outside_bounds and not params.within_bounds:
        # Python slicing: a negative index counts from the far end.
        start = tf.where(start < 0, start + limit, start)
    start = tf.clip_by_value(start, 0, limit)
    end = tf.clip_by_value(end, 0, limit)
    return tf.concat([start, end], axis=-1)


def box_mask(seed, height, width, params):
    """Draws one box mask.

    Returns:
      float32 tensor [height, width, 1]; with the default `invert` it is 1 inside an odd number of boxes.
    """
    corners = box_corners(seed, height, width, params)
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    inside = ((rows >= corners[:, 0, None, None]) & (rows < corners[:, 2, None, None])
              & (cols >= corners[:, 1, None, None]) & (cols < corners[:, 3, None, None]))
    # Each box flips the pixels under it, so overlapping boxes combine by xor.
    flipped = tf.math.floormod(tf.reduce_sum(tf.cast(inside, tf.int32), axis=0), 2)
    mask = tf.cast(flipped, tf.float32)
    if not params.invert:
        mask = 1.0 - mask
    return mask[:, :, None]


@dataclasses.dataclass(frozen=True)
class PseudoLabelBoxParams:
    """The CutMix box of FixMatch's and UniMatch's strong view (UniMatch's `obtain_cutmix_box`).

    With probability `prob` one box, else none; its area a fraction U(area_range) of the image, its
    height / width ratio squared from U(ratio_range) (width sqrt(area / r), height sqrt(area r),
    truncated to whole pixels), its top-left corner uniform over the image, redrawn (ratio and corner,
    the area kept) until the box fits. `tries` candidates are drawn at once and the first that fits
    is kept: the same distribution as the loop, except when none of them fits (then no box), which
    at 256 tries happens about once in 10^8 draws.
    """
    prob: float = 0.5
    area_range: tuple = (0.02, 0.4)
    ratio_range: tuple = (0.3, 1 / 0.3)
    tries: int = 256


def pseudo_label_box_corners(seed, height, width, params=PseudoLabelBoxParams()):
    """[1, 4] int32 (y0, x0, y1, x1) of the box, half-open; (0, 0, 0, 0) when there is none."""
    seeds = tf.random.experimental.stateless_split(seed, 5)
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    present = tf.random.stateless_uniform([], seeds[0], dtype=tf.float64) < params.prob
    area = tf.random.stateless_uniform([], seeds[1], *params.area_range, dtype=tf.float64) * h * w
    ratio = tf.random.stateless_uniform([params.tries], seeds[2], *params.ratio_range,
                                        dtype=tf.float64)
    box_w = tf.cast(tf.sqrt(area / ratio), tf.int32)
    box_h = tf.cast(tf.sqrt(area * ratio), tf.int32)
    # randint(0, size): uniform over 0 .. size - 1.
    x0 = tf.random.stateless_uniform([params.tries], seeds[3], 0, width, dtype=tf.int32)
    y0 = tf.random.stateless_uniform([params.tries], seeds[4], 0, height, dtype=tf.int32)
    fits = (x0 + box_w <= width) & (y0 + box_h <= height)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    box = tf.stack([y0[first], x0[first], y0[first] + box_h[first], x0[first] + box_w[first]])
    keep = present & tf.reduce_any(fits)
    return tf.where(keep, box, tf.zeros_like(box))[tf.newaxis]


def pseudo_label_box_mask(seed, height, width, params=PseudoLabelBoxParams()):
    """[height, width, 1] float32: 1 inside the box (where the other image is pasted), else 0."""
    corners = pseudo_label_box_corners(seed, height, width, params)[0]
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    inside = ((rows >= corners[0]) & (rows < corners[2]) & (cols >= corners[1]) & (cols < corners[3]))
    return tf.cast(inside, tf.float32)[:, :, None]
