"""Geometric augmentation as affine matrices in pixel coordinates, applied by one warp.

Conventions (the authors', SPEC 3.2, and OpenCV's): a 3x3 matrix maps *source* pixel coordinates
(x, y) to *destination* pixel coordinates, with integer coordinates at pixel centres; matrices compose
by product, rightmost applied first. `warp` hands TF's `ImageProjectiveTransformV3` the inverse, because
that op maps output pixels to input pixels (OpenCV's WARP_INVERSE_MAP); no half-pixel shifts are needed.

Each random op draws from an explicit stateless seed, so a sample's augmentation is a pure function of
(run seed, stream, sample position), and a resumed run sees exactly the data it would have seen.
"""
import dataclasses

import tensorflow as tf

# The 11 scale factors of Hung et al.'s augmentation: 0.5, 0.6, ..., 1.5 (SPEC 3.5).
HUNG_SCALES = tuple(0.5 + i / 10 for i in range(11))


@dataclasses.dataclass(frozen=True)
class GeometricParams:
    """The geometric augmentation of one stream.

    Attributes:
      crop_size: (height, width) of the output crop.
      scale_hung: Hung et al.'s random scale in {0.5, ..., 1.5} before cropping.
      hflip, vflip: random horizontal / vertical flips, each with probability 0.5.
    """
    crop_size: tuple
    scale_hung: bool = False
    hflip: bool = False
    vflip: bool = False


def translation(tx, ty):
    tx = tf.cast(tx, tf.float32)
    ty = tf.cast(ty, tf.float32)
    return tf.stack([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def scaling(sx, sy):
    sx = tf.cast(sx, tf.float32)
    sy = tf.cast(sy, tf.float32)
    return tf.stack([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]])


def flip_matrix(hflip, vflip, height, width):
    """Mirrors x (hflip) and/or y (vflip) of an image of the given size, e.g. [[-1,0,W-1],[0,1,0]]."""
    fx = tf.cast(hflip, tf.float32)
    fy = tf.cast(vflip, tf.float32)
    return tf.matmul(
        translation(fx * (tf.cast(width, tf.float32) - 1), fy * (tf.cast(height, tf.float32) - 1)),
        scaling(1 - 2 * fx, 1 - 2 * fy))


def _pad_offsets(in_h, in_w, min_h, min_w):
    """Padded size and top/left padding when padding to at least (min_h, min_w), smaller half first."""
    pad_h = tf.maximum(min_h - in_h, 0)
    pad_w = tf.maximum(min_w - in_w, 0)
    return in_h + pad_h, in_w + pad_w, pad_h // 2, pad_w // 2


def random_crop_matrix(seed, in_h, in_w, crop_h, crop_w):
    """Pad to the crop size (mean colour / ignore label) and crop at a uniform position (SPEC 3.4)."""
    padded_h, padded_w, top, left = _pad_offsets(in_h, in_w, crop_h, crop_w)
    u = tf.random.stateless_uniform([2], seed)
    pos_y = tf.round(tf.cast(padded_h - crop_h, tf.float32) * u[0])
    pos_x = tf.round(tf.cast(padded_w - crop_w, tf.float32) * u[1])
    return tf.matmul(translation(-pos_x, -pos_y), translation(left, top))


def hung_scale_crop_matrix(seed, in_h, in_w, crop_h, crop_w):
    """Hung et al.'s scale-and-crop (SPEC 3.5): crop round(crop / f) pixels, resize them to `crop`."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    index = tf.random.stateless_uniform([], seeds[0], 0, len(HUNG_SCALES), dtype=tf.int32)
    factor = tf.gather(tf.constant(HUNG_SCALES, tf.float32), index)
    src_h = tf.cast(tf.round(crop_h / factor), tf.int32)
    src_w = tf.cast(tf.round(crop_w / factor), tf.int32)
    padded_h, padded_w, top, left = _pad_offsets(in_h, in_w, src_h, src_w)
    u = tf.random.stateless_uniform([2], seeds[1])
    pos_y = tf.round(tf.cast(padded_h - src_h, tf.float32) * u[0])
    pos_x = tf.round(tf.cast(padded_w - src_w, tf.float32) * u[1])
    s_y = crop_h / tf.cast(src_h, tf.float32)
    s_x = crop_w / tf.cast(src_w, tf.float32)
    # cv2.resize maps dst = s * src + (s - 1) / 2 with pixel centres at integers.
    resize = tf.matmul(translation((s_x - 1) / 2, (s_y - 1) / 2), scaling(s_x, s_y))
    return tf.matmul(resize, tf.matmul(translation(-pos_x, -pos_y), translation(left, top)))


def random_flip(seed, height, width, hflip, vflip):
    u = tf.random.stateless_uniform([2], seed)
    return flip_matrix(tf.logical_and(hflip, u[0] < 0.5), tf.logical_and(vflip, u[1] < 0.5),
                       height, width)


def random_geometric_matrix(seed, in_h, in_w, params):
    """The full source-to-crop matrix of one sample: scale/crop, then flips."""
    crop_h, crop_w = params.crop_size
    seeds = tf.random.experimental.stateless_split(seed, 2)
    if params.scale_hung:
        matrix = hung_scale_crop_matrix(seeds[0], in_h, in_w, crop_h, crop_w)
    else:
        matrix = random_crop_matrix(seeds[0], in_h, in_w, crop_h, crop_w)
    if params.hflip or params.vflip:
        matrix = tf.matmul(random_flip(seeds[1], crop_h, crop_w, params.hflip, params.vflip), matrix)
    return matrix


def _warp_nearest(images, inverse, out_size, fill_value):
    """Nearest-neighbour warp by explicit gather, source coordinates computed in float64.

    Integer-ratio scalings put source coordinates exactly on .5 ties. OpenCV's warpAffine rounds
    them half to even (rint); TF's ImageProjectiveTransform rounds half away from zero, in float32,
    so ties would land either way. `tf.round` is half to even, so this matches OpenCV exactly.
    """
    height, width = out_size
    ys, xs = tf.meshgrid(tf.range(height, dtype=tf.float64), tf.range(width, dtype=tf.float64),
                         indexing="ij")
    coords = tf.stack([xs, ys, tf.ones_like(xs)], axis=-1)                   # [h, w, 3]
    source = tf.einsum("nij,hwj->nhwi", inverse, coords)                     # [n, h, w, 3]
    src_x = tf.cast(tf.round(source[..., 0]), tf.int32)
    src_y = tf.cast(tf.round(source[..., 1]), tf.int32)
    in_h, in_w = tf.shape(images)[1], tf.shape(images)[2]
    inside = (src_x >= 0) & (src_x < in_w) & (src_y >= 0) & (src_y < in_h)
    indices = tf.stack([tf.clip_by_value(src_y, 0, in_h - 1), tf.clip_by_value(src_x, 0, in_w - 1)],
                       axis=-1)
    gathered = tf.gather_nd(images, indices, batch_dims=1)
    return tf.where(inside[..., None], gathered, tf.cast(fill_value, images.dtype))


def warp(image, matrix, out_size, interpolation="BILINEAR", fill_value=0.0):
    """Warps an HWC or NHWC image by a source-to-destination matrix, like `cv2.warpAffine`.

    Args:
      image: [H, W, C] or [N, H, W, C] tensor (float32, int32 or uint8).
      matrix: [3, 3] or [N, 3, 3] float32 forward matrix.
      out_size: (height, width) of the output.
      interpolation: "BILINEAR" or "NEAREST".
      fill_value: value of pixels that map from outside the source.
    """
    image = tf.convert_to_tensor(image)
    single = image.shape.rank == 3
    if single:
        image = image[None]
        matrix = matrix[None]
    inverse = tf.linalg.inv(tf.cast(matrix, tf.float64))
    inverse = inverse / inverse[:, 2:3, 2:3]
    if interpolation == "NEAREST":
        out = _warp_nearest(image, inverse, out_size, fill_value)
    else:
        transforms = tf.cast(tf.reshape(inverse, [-1, 9])[:, :8], tf.float32)
        out = tf.raw_ops.ImageProjectiveTransformV3(
            images=image, transforms=transforms, output_shape=tf.constant(out_size, tf.int32),
            fill_value=tf.constant(fill_value, tf.float32), interpolation=interpolation,
            fill_mode="CONSTANT")
    return out[0] if single else out
