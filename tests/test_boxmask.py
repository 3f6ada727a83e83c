"""Box masks against the formulas of the authors' `BoxMaskGenerator` and a numpy xor oracle."""
import numpy as np
import pytest
import tensorflow as tf

from semiseg_tf.augment import boxmask


def draw(params, count, size=(40, 60), seed=7):
    seeds = tf.random.experimental.stateless_split(tf.constant([seed, 1], tf.int64), count)
    corners = np.stack([boxmask.box_corners(s, *size, params).numpy() for s in seeds])
    masks = np.stack([boxmask.box_mask(s, *size, params).numpy()[..., 0] for s in seeds])
    return corners, masks


def numpy_xor_mask(corners, size, invert=True):
    mask = np.zeros(size) if invert else np.ones(size)
    for y0, x0, y1, x1 in corners:
        mask[y0:y1, x0:x1] = 1 - mask[y0:y1, x0:x1]
    return mask


def test_cutmix_box_has_half_the_area_and_bounded_sides():
    height, width = 40, 60
    corners, masks = draw(boxmask.BoxMaskParams(prop_range=(0.5, 0.5)), 300, (height, width))
    box_h = corners[:, 0, 2] - corners[:, 0, 0]
    box_w = corners[:, 0, 3] - corners[:, 0, 1]
    # Sides are rounded from fractions y, x with y * x = 0.5, each in [0.5, 1].
    assert np.all(box_h >= round(0.5 * height)) and np.all(box_h <= height)
    assert np.all(box_w >= round(0.5 * width)) and np.all(box_w <= width)
    area = box_h * box_w
    rounding = 0.5 * (box_h + box_w) + 0.25
    assert np.all(np.abs(area - 0.5 * height * width) <= rounding)
    # The mask is that box: ones inside, zeros outside, and wholly inside the image.
    assert np.all(corners[:, 0, :2] >= 0)
    assert np.all(corners[:, 0, 2] <= height) and np.all(corners[:, 0, 3] <= width)
    np.testing.assert_array_equal(masks.sum(axis=(1, 2)), area)
    # log(y_prop) / log(prop) is the uniform u of the random aspect ratio: mean 1/2, spread 1/sqrt(12).
    u = np.log(box_h / height) / np.log(0.5)
    assert abs(u.mean() - 0.5) < 0.06 and abs(u.std() - 12 ** -0.5) < 0.05
    # Positions are uniform over the free range: the box centres cover the image.
    centres = (corners[:, 0, 1] + corners[:, 0, 3]) / 2
    assert centres.min() < width * 0.4 and centres.max() > width * 0.6


def test_three_boxes_xor_each_a_sixth():
    size = (48, 48)
    corners, masks = draw(boxmask.BoxMaskParams(prop_range=(0.5, 0.5), n_boxes=3), 100, size)
    for box_corners, mask in zip(corners, masks):
        np.testing.assert_array_equal(mask, numpy_xor_mask(box_corners, size))
    areas = (corners[..., 2] - corners[..., 0]) * (corners[..., 3] - corners[..., 1])
    sides = (corners[..., 2] - corners[..., 0]) + (corners[..., 3] - corners[..., 1])
    assert np.all(np.abs(areas - 48 * 48 / 6) <= 0.5 * sides + 0.25)
    # Overlaps happen and flip back: some masks cover less than the sum of their boxes.
    assert np.any(masks.sum(axis=(1, 2)) < areas.sum(axis=1))


def test_area_range_fixed_aspect_and_no_invert():
    params = boxmask.BoxMaskParams(prop_range=(0.0, 1.0), random_aspect_ratio=False, invert=False)
    corners, masks = draw(params, 200, (50, 50))
    box_h = corners[:, 0, 2] - corners[:, 0, 0]
    box_w = corners[:, 0, 3] - corners[:, 0, 1]
    np.testing.assert_array_equal(box_h, box_w)  # the crop's aspect ratio (square here)
    fractions = box_h * box_w / 2500
    assert fractions.min() < 0.1 and fractions.max() > 0.9
    assert abs(fractions.mean() - 0.5) < 0.06   # area ~ U(0, 1)
    for box_corners, mask in zip(corners, masks):  # no invert: zeros inside, ones outside
        np.testing.assert_array_equal(mask, numpy_xor_mask(box_corners, (50, 50), invert=False))


def test_outside_bounds_boxes_are_clipped_not_dropped():
    params = boxmask.BoxMaskParams(prop_range=(0.3, 0.3), within_bounds=False)
    corners, masks = draw(params, 300, (32, 32))
    assert np.all(corners >= 0) and np.all(corners <= 32)
    # Some boxes crossed the top or left edge; they keep their visible part.
    touching = (corners[:, 0, 0] == 0) | (corners[:, 0, 1] == 0)
    assert touching.sum() > 10
    assert np.all(masks[touching].sum(axis=(1, 2)) > 0)


def test_authors_outside_bounds_bug_is_reproduced_on_request():
    """Against the authors' numpy code: `mask[int(c - s/2):int(c + s/2)]`, Python slicing included."""
    params = boxmask.BoxMaskParams(prop_range=(0.25, 0.25), random_aspect_ratio=False,
                                   within_bounds=False, authors_outside_bounds=True)
    size, side = 32, 16          # a quarter of the area, the crop's aspect ratio: 16 x 16
    seeds = tf.random.experimental.stateless_split(tf.constant([5, 1], tf.int64), 200)
    crossing = 0
    for seed in seeds:
        # The same uniform draw as box_corners' centre (its fourth seed); the oracle is the slicing.
        u = tf.random.stateless_uniform([1, 2], tf.random.experimental.stateless_split(seed, 4)[3],
                                        dtype=tf.float64).numpy()[0]
        centre = np.round(size * u)
        start, end = centre - side / 2, centre + side / 2
        expected = np.zeros((size, size))
        expected[int(start[0]):int(end[0]), int(start[1]):int(end[1])] = 1
        crossing += int(np.any(start < 0))
        got = boxmask.box_mask(seed, size, size, params).numpy()[..., 0]
        np.testing.assert_array_equal(got, expected)
    assert crossing > 20


def test_zero_area_gives_empty_mask():
    _, masks = draw(boxmask.BoxMaskParams(prop_range=(0.0, 0.0)), 5)
    assert masks.sum() == 0


@pytest.mark.parametrize("seed", [1, 2])
def test_same_seed_same_mask(seed):
    params = boxmask.BoxMaskParams()
    a = boxmask.box_mask(tf.constant([seed, 3], tf.int64), 20, 20, params)
    b = boxmask.box_mask(tf.constant([seed, 3], tf.int64), 20, 20, params)
    np.testing.assert_array_equal(a, b)


def unimatch_box(rng, height, width, p=0.5, size_min=0.02, size_max=0.4, ratio_1=0.3,
                 ratio_2=1 / 0.3):
    """UniMatch's obtain_cutmix_box, written out in numpy for an H x W image: (y0, x0, y1, x1)."""
    if rng.random() > p:
        return (0, 0, 0, 0)
    size = rng.uniform(size_min, size_max) * height * width
    while True:
        ratio = rng.uniform(ratio_1, ratio_2)
        cutmix_w, cutmix_h = int(np.sqrt(size / ratio)), int(np.sqrt(size * ratio))
        x, y = rng.integers(0, width), rng.integers(0, height)
        if x + cutmix_w <= width and y + cutmix_h <= height:
            return (y, x, y + cutmix_h, x + cutmix_w)


def test_pseudo_label_box_is_distributed_as_unimatchs_rejection_loop():
    import scipy.stats
    height, width, count = 40, 56, 3000
    corners = tf.function(lambda seed: boxmask.pseudo_label_box_corners(seed, height, width)[0])
    ours = np.array([corners(tf.constant([i, 9], tf.int64)).numpy() for i in range(count)])
    rng = np.random.default_rng(0)
    theirs = np.array([unimatch_box(rng, height, width) for _ in range(count)])
    for boxes in (ours, theirs):
        assert (boxes[:, :2] >= 0).all()
        assert (boxes[:, 2] <= height).all() and (boxes[:, 3] <= width).all()
    present = [(b[:, 2] > b[:, 0]).mean() for b in (ours, theirs)]
    assert abs(present[0] - 0.5) < 0.04 and abs(present[1] - 0.5) < 0.04
    boxes = [b[b[:, 2] > b[:, 0]] for b in (ours, theirs)]
    # Area, shape and position of the boxes that are there: the rejection loop favours small and
    # square boxes (big or elongated ones rarely fit); the same distributions on both sides.
    def area(b):
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / (height * width)
    for statistic in (area, lambda b: np.log((b[:, 3] - b[:, 1]) / (b[:, 2] - b[:, 0])),
                      lambda b: b[:, 0], lambda b: b[:, 1]):
        assert scipy.stats.ks_2samp(statistic(boxes[0]), statistic(boxes[1])).pvalue > 1e-3
    assert 0.01 < area(boxes[0]).min() and area(boxes[0]).max() < 0.41     # sides truncated
    # The mask is that box.
    seed = tf.constant([int(np.flatnonzero(ours[:, 2] > ours[:, 0])[0]), 9], tf.int64)
    y0, x0, y1, x1 = corners(seed).numpy()
    expected = np.zeros((height, width, 1), np.float32)
    expected[y0:y1, x0:x1] = 1
    np.testing.assert_array_equal(boxmask.pseudo_label_box_mask(seed, height, width), expected)
