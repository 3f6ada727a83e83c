"""Geometric augmentation as affine matrices in pixel coordinates, applied by one warp.

Conventions (the authors' and OpenCV's): a 3x3 matrix maps *source* pixel coordinates
(x, y) to *destination* pixel coordinates, with integer coordinates at pixel centres; matrices compose
by product, rightmost applied first. `warp` hands TF's `ImageProjectiveTransformV3` the inverse, because
that op maps output pixels to input pixels (OpenCV's WARP_INVERSE_MAP); no half-pixel shifts are needed.

The ops are the authors': random crop with mean-colour padding, Hung et al.'s scale and
crop, rotate/scale/crop with mirrored (BORDER_REFLECT_101) borders, and h/v/diagonal flips; each in a
single form (one view) and a paired form (a teacher's and a student's view of one image, for
standard-augmentation consistency). Every pipeline of the project uses them.

Each random op draws from an explicit stateless seed, so a sample's augmentation is a pure function of
(run seed, stream, sample position), and a resumed run sees exactly the data it would have seen.
"""
import dataclasses

import tensorflow as tf

# The 11 scale factors of Hung et al.'s augmentation: 0.5, 0.6, ..., 1.5.
HUNG_SCALES = tuple(0.5 + i / 10 for i in range(11))


@dataclasses.dataclass(frozen=True)
class GeometricParams:
    """The geometric augmentation of one stream.

    One of three crop operations is used, as in the authors' programs: Hung et al.'s scale and crop
    (`scale_hung`), else rotate/scale/crop when `rot_mag` or `max_scale` ask for it, else a plain
    random crop. Then random flips.

    Attributes:
      crop_size: (height, width) of the output crop.
      scale_hung: Hung et al.'s random scale in {0.5, ..., 1.5} before cropping.
      max_scale: rotate/scale/crop: scale drawn log-uniformly from [1/max_scale, max_scale].
      scale_non_uniform: rotate/scale/crop: draw the x and y scales independently.
      rot_mag: rotate/scale/crop: rotation drawn from U(-rot_mag, rot_mag) degrees.
      hflip, vflip, hvflip: random horizontal, vertical and diagonal (transpose) flips, each with
        probability 0.5.
      crop_offset: paired views (standard-augmentation consistency): the student's crop is offset from
        the teacher's by up to this many pixels per axis.
      free_scale_rot: paired views: the student gets its own rotation and scale (otherwise the two
        views share them and differ by offset, flips and Hung scale only).
    """
    crop_size: tuple
    scale_hung: bool = False
    max_scale: float = 1.0
    scale_non_uniform: bool = False
    rot_mag: float = 0.0
    hflip: bool = False
    vflip: bool = False
    hvflip: bool = False
    crop_offset: float = 0.0
    free_scale_rot: bool = False

    @property
    def rotate_scale(self):
        return not self.scale_hung and (self.max_scale != 1.0 or self.rot_mag != 0.0)

    @property
    def image_border(self):
        """How image pixels from outside the source are filled: the mean colour (0 after
        normalisation) for crops with padding, mirrored content for rotate/scale/crop (OpenCV's
        BORDER_REFLECT_101, as the authors' ISIC pipeline)."""
        return "REFLECT_101" if self.rotate_scale else "CONSTANT"


def translation(tx, ty):
    tx = tf.cast(tx, tf.float32)
    ty = tf.cast(ty, tf.float32)
    return tf.stack([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def scaling(sx, sy):
    sx = tf.cast(sx, tf.float32)
    sy = tf.cast(sy, tf.float32)
    return tf.stack([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]])


def rotation(theta):
    """The authors' rotation: [[cos, sin], [-sin, cos]], counter-clockwise on screen."""
    cos, sin = tf.cos(tf.cast(theta, tf.float32)), tf.sin(tf.cast(theta, tf.float32))
    return tf.stack([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])


def flip_matrix(hflip, vflip, height, width, hvflip=False):
    """Mirrors x (hflip) and/or y (vflip), then swaps the axes (hvflip), of an image of the given size;
    e.g. hflip is [[-1,0,W-1],[0,1,0]] (the authors' `flip_xyd_matrices`)."""
    fx = tf.cast(hflip, tf.float32)
    fy = tf.cast(vflip, tf.float32)
    flip = tf.matmul(
        translation(fx * (tf.cast(width, tf.float32) - 1), fy * (tf.cast(height, tf.float32) - 1)),
        scaling(1 - 2 * fx, 1 - 2 * fy))
    swap = tf.constant([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    return tf.where(tf.cast(hvflip, tf.bool), tf.matmul(swap, flip), flip)


def _pad_offsets(in_h, in_w, min_h, min_w):
    """Padded size and top/left padding when padding to at least (min_h, min_w), smaller half first."""
    pad_h = tf.maximum(min_h - in_h, 0)
    pad_w = tf.maximum(min_w - in_w, 0)
    return in_h + pad_h, in_w + pad_w, pad_h // 2, pad_w // 2


def _uniform_position(seed, padded_h, padded_w, region_h, region_w):
    """Top-left (y, x) of a region placed uniformly in the padded image, rounded to whole pixels."""
    u = tf.random.stateless_uniform([2], seed)
    return (tf.round(tf.cast(padded_h - region_h, tf.float32) * u[0]),
            tf.round(tf.cast(padded_w - region_w, tf.float32) * u[1]))


def _hung_source_size(seed, crop_h, crop_w):
    """Hung et al.'s factor f from {0.5, ..., 1.5}, as the source size round(crop / f) it implies."""
    index = tf.random.stateless_uniform([], seed, 0, len(HUNG_SCALES), dtype=tf.int32)
    factor = tf.gather(tf.constant(HUNG_SCALES, tf.float32), index)
    return tf.cast(tf.round(crop_h / factor), tf.int32), tf.cast(tf.round(crop_w / factor), tf.int32)


def _resize_matrix(src_h, src_w, crop_h, crop_w):
    """cv2.resize from (src_h, src_w) to the crop: dst = s * src + (s - 1) / 2, pixel centres at
    integers."""
    s_y = crop_h / tf.cast(src_h, tf.float32)
    s_x = crop_w / tf.cast(src_w, tf.float32)
    return tf.matmul(translation((s_x - 1) / 2, (s_y - 1) / 2), scaling(s_x, s_y))


def random_crop_matrix(seed, in_h, in_w, crop_h, crop_w):
    """Pad to the crop size (mean colour / ignore label) and crop at a uniform position."""
    padded_h, padded_w, top, left = _pad_offsets(in_h, in_w, crop_h, crop_w)
    pos_y, pos_x = _uniform_position(seed, padded_h, padded_w, crop_h, crop_w)
    return tf.matmul(translation(-pos_x, -pos_y), translation(left, top))


def hung_scale_crop_matrix(seed, in_h, in_w, crop_h, crop_w):
    """Hung et al.'s scale-and-crop: crop round(crop / f) pixels, resize them to `crop`."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    src_h, src_w = _hung_source_size(seeds[0], crop_h, crop_w)
    padded_h, padded_w, top, left = _pad_offsets(in_h, in_w, src_h, src_w)
    pos_y, pos_x = _uniform_position(seeds[1], padded_h, padded_w, src_h, src_w)
    return tf.matmul(_resize_matrix(src_h, src_w, crop_h, crop_w),
                     tf.matmul(translation(-pos_x, -pos_y), translation(left, top)))


def _offset_position(seed, position, offset, extra):
    """The second view's crop position: `position + round(offset * U(-1, 1))` clipped to [0, extra]."""
    shift = tf.round(offset * tf.random.stateless_uniform([], seed, -1.0, 1.0))
    return tf.clip_by_value(position + shift, 0.0, tf.cast(extra, tf.float32))


def random_crop_pair(seed, in_h, in_w, crop_h, crop_w, offset):
    """Two random crops, the second within `offset` pixels of the first (pair)."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    padded_h, padded_w, top, left = _pad_offsets(in_h, in_w, crop_h, crop_w)
    pos_y, pos_x = _uniform_position(seeds[0], padded_h, padded_w, crop_h, crop_w)
    pos1_y = _offset_position(seeds[1], pos_y, offset, padded_h - crop_h)
    pos1_x = _offset_position(seeds[2], pos_x, offset, padded_w - crop_w)
    pad = translation(left, top)
    return (tf.matmul(translation(-pos_x, -pos_y), pad), tf.matmul(translation(-pos1_x, -pos1_y), pad))


def hung_scale_crop_pair(seed, in_h, in_w, crop_h, crop_w, offset):
    """Hung et al.'s scale-and-crop for a pair: the teacher's view is an unscaled crop; the
    student's, centred within `offset` pixels of it, is a crop of round(crop / f) pixels resized
    to the crop size."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    src_h, src_w = _hung_source_size(seeds[0], crop_h, crop_w)
    region_h, region_w = tf.maximum(crop_h, src_h), tf.maximum(crop_w, src_w)
    padded_h, padded_w, top, left = _pad_offsets(in_h, in_w, region_h, region_w)
    pos_y, pos_x = _uniform_position(seeds[1], padded_h, padded_w, region_h, region_w)
    pos1_y = _offset_position(seeds[2], pos_y, offset, padded_h - region_h)
    pos1_x = _offset_position(seeds[3], pos_x, offset, padded_w - region_w)
    pad = translation(left, top)

    def centred(pos_x, pos_y, size_h, size_w):
        # A view of size_h x size_w centred in its region (integer offsets, as integer crops).
        return tf.matmul(translation(-(pos_x + tf.cast((region_w - size_w) // 2, tf.float32)),
                                     -(pos_y + tf.cast((region_h - size_h) // 2, tf.float32))), pad)

    teacher = centred(pos_x, pos_y, crop_h, crop_w)
    student = tf.matmul(_resize_matrix(src_h, src_w, crop_h, crop_w),
                        centred(pos1_x, pos1_y, src_h, src_w))
    return teacher, student


def _random_scales(seed, max_scale, non_uniform):
    """(s_x, s_y) drawn log-uniformly from [1/max_scale, max_scale] (one value for both if uniform)."""
    log_max = tf.math.log(tf.constant(max_scale, tf.float32))
    draws = tf.exp(tf.random.stateless_uniform([2], seed, -1.0, 1.0) * log_max)
    return (draws[0], draws[1]) if non_uniform else (draws[0], draws[0])


def rotate_scale_crop_pair(seed, in_h, in_w, params, paired):
    """The rotate-scale-crop matrices: T(crop / 2) . T(offset) . R(theta) . S(s) . T(-centre); the
    second view has its own offset (and, with `free_scale_rot`, its own scale and rotation).
    Returns (first, second)."""
    crop_h, crop_w = params.crop_size
    seeds = tf.random.experimental.stateless_split(seed, 7)
    rot = params.rot_mag * 3.141592653589793 / 180.0
    thetas = tf.random.stateless_uniform([2], seeds[0], -rot, rot) if rot > 0 else tf.zeros([2])
    first_scale = _random_scales(seeds[1], params.max_scale, params.scale_non_uniform)
    second_scale = (_random_scales(seeds[2], params.max_scale, params.scale_non_uniform)
                    if paired and params.free_scale_rot else first_scale)
    theta1 = thetas[1] if paired and params.free_scale_rot else thetas[0]
    # The source region must hold both views: the smaller scale needs the larger region.
    region_x = crop_w / tf.minimum(first_scale[0], second_scale[0])
    region_y = crop_h / tf.minimum(first_scale[1], second_scale[1])
    in_h_f, in_w_f = tf.cast(in_h, tf.float32), tf.cast(in_w, tf.float32)
    u = tf.random.stateless_uniform([2], seeds[3])
    centre_y = tf.maximum(in_h_f - region_y, 0.0) * u[0] + tf.minimum(region_y, in_h_f) / 2
    centre_x = tf.maximum(in_w_f - region_x, 0.0) * u[1] + tf.minimum(region_x, in_w_f) / 2
    to_centre = translation(-centre_x, -centre_y)
    out_centre = translation(crop_w / 2, crop_h / 2)

    def view(scale, theta, offset):
        local = tf.matmul(rotation(theta), tf.matmul(scaling(*scale), to_centre))
        return tf.matmul(out_centre, tf.matmul(offset, local))

    first = view(first_scale, thetas[0], translation(0.0, 0.0))
    if not paired:
        return first, first
    shift = tf.round(params.crop_offset * tf.random.stateless_uniform([2], seeds[4], -1.0, 1.0))
    return first, view(second_scale, theta1, translation(shift[1], shift[0]))


def random_flip(seed, height, width, params):
    u = tf.random.stateless_uniform([3], seed)
    return flip_matrix(params.hflip and u[0] < 0.5, params.vflip and u[1] < 0.5, height, width,
                       params.hvflip and u[2] < 0.5)


def _with_flip(seed, matrix, params):
    if not (params.hflip or params.vflip or params.hvflip):
        return matrix
    crop_h, crop_w = params.crop_size
    return tf.matmul(random_flip(seed, crop_h, crop_w, params), matrix)


def random_geometric_matrix(seed, in_h, in_w, params):
    """The full source-to-crop matrix of one sample: scale/rotate/crop, then flips."""
    crop_h, crop_w = params.crop_size
    seeds = tf.random.experimental.stateless_split(seed, 2)
    if params.scale_hung:
        matrix = hung_scale_crop_matrix(seeds[0], in_h, in_w, crop_h, crop_w)
    elif params.rotate_scale:
        matrix, _ = rotate_scale_crop_pair(seeds[0], in_h, in_w, params, paired=False)
    else:
        matrix = random_crop_matrix(seeds[0], in_h, in_w, crop_h, crop_w)
    return _with_flip(seeds[1], matrix, params)


def random_geometric_pair(seed, in_h, in_w, params):
    """Source-to-crop matrices of the teacher's and the student's views of one sample: the
    crop op in its paired form, then independent flips for each view."""
    crop_h, crop_w = params.crop_size
    seeds = tf.random.experimental.stateless_split(seed, 3)
    if params.scale_hung:
        first, second = hung_scale_crop_pair(seeds[0], in_h, in_w, crop_h, crop_w, params.crop_offset)
    elif params.rotate_scale:
        first, second = rotate_scale_crop_pair(seeds[0], in_h, in_w, params, paired=True)
    else:
        first, second = random_crop_pair(seeds[0], in_h, in_w, crop_h, crop_w, params.crop_offset)
    return _with_flip(seeds[1], first, params), _with_flip(seeds[2], second, params)


def _source_coordinates(inverse, out_size):
    """Source (x, y) in float64 of every output pixel, each [n, h, w], for output-to-source matrices."""
    height, width = out_size
    ys, xs = tf.meshgrid(tf.range(height, dtype=tf.float64), tf.range(width, dtype=tf.float64),
                         indexing="ij")
    coords = tf.stack([xs, ys, tf.ones_like(xs)], axis=-1)                   # [h, w, 3]
    source = tf.einsum("nij,hwj->nhwi", inverse, coords)                     # [n, h, w, 3]
    return source[..., 0], source[..., 1]


def _warp_nearest(images, inverse, out_size, fill_value):
    """Nearest-neighbour warp by explicit gather, source coordinates computed in float64.

    Integer-ratio scalings put source coordinates exactly on .5 ties. OpenCV's warpAffine rounds
    them half to even (rint); TF's ImageProjectiveTransform rounds half away from zero, in float32,
    so ties would land either way. `tf.round` is half to even, so this matches OpenCV exactly.
    """
    source_x, source_y = _source_coordinates(inverse, out_size)
    src_x = tf.cast(tf.round(source_x), tf.int32)
    src_y = tf.cast(tf.round(source_y), tf.int32)
    in_h, in_w = tf.shape(images)[1], tf.shape(images)[2]
    inside = (src_x >= 0) & (src_x < in_w) & (src_y >= 0) & (src_y < in_h)
    indices = tf.stack([tf.clip_by_value(src_y, 0, in_h - 1), tf.clip_by_value(src_x, 0, in_w - 1)],
                       axis=-1)
    gathered = tf.gather_nd(images, indices, batch_dims=1)
    return tf.where(inside[..., None], gathered, tf.cast(fill_value, images.dtype))


def _reflect_101(index, size):
    """OpenCV's BORDER_REFLECT_101 (gfedcb|abcdefgh|gfedcba) of integer indices into [0, size)."""
    period = tf.maximum(2 * (size - 1), 1)
    index = tf.math.floormod(index, period)
    return tf.where(index >= size, period - index, index)


def _warp_bilinear_reflect(images, inverse, out_size):
    """Bilinear warp with BORDER_REFLECT_101, by explicit gathers of the four neighbours (the op has
    only BORDER_REFLECT, which repeats the edge pixel)."""
    source_x, source_y = _source_coordinates(inverse, out_size)
    x0, y0 = tf.floor(source_x), tf.floor(source_y)
    fx = tf.cast(source_x - x0, images.dtype)[..., None]
    fy = tf.cast(source_y - y0, images.dtype)[..., None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    in_h, in_w = tf.shape(images)[1], tf.shape(images)[2]

    def at(y, x):
        indices = tf.stack([_reflect_101(y, in_h), _reflect_101(x, in_w)], axis=-1)
        return tf.gather_nd(images, indices, batch_dims=1)

    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def warp(image, matrix, out_size, interpolation="BILINEAR", fill_value=0.0, border="CONSTANT"):
    """Warps an HWC or NHWC image by a source-to-destination matrix, like `cv2.warpAffine`.

    Args:
      image: [H, W, C] or [N, H, W, C] tensor (float32, int32 or uint8).
      matrix: [3, 3] or [N, 3, 3] float32 forward matrix.
      out_size: (height, width) of the output.
      interpolation: "BILINEAR" or "NEAREST".
      fill_value: value of pixels that map from outside the source (border "CONSTANT").
      border: "CONSTANT" or "REFLECT_101" (bilinear float images only).
    """
    image = tf.convert_to_tensor(image)
    single = image.shape.rank == 3
    if single:
        image = image[None]
        matrix = matrix[None]
    inverse = tf.linalg.inv(tf.cast(matrix, tf.float64))
    inverse = inverse / inverse[:, 2:3, 2:3]
    if border == "REFLECT_101":
        if interpolation != "BILINEAR":
            raise ValueError("REFLECT_101 borders are implemented for bilinear image warps only")
        out = _warp_bilinear_reflect(image, inverse, out_size)
    elif interpolation == "NEAREST":
        out = _warp_nearest(image, inverse, out_size, fill_value)
    else:
        transforms = tf.cast(tf.reshape(inverse, [-1, 9])[:, :8], tf.float32)
        out = tf.raw_ops.ImageProjectiveTransformV3(
            images=image, transforms=transforms, output_shape=tf.constant(out_size, tf.int32),
            fill_value=tf.constant(fill_value, tf.float32), interpolation=interpolation,
            fill_mode="CONSTANT")
    return out[0] if single else out
