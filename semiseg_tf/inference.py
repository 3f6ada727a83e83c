"""The one inference path: uint8 RGB images of any size in, class maps and probabilities out.

The trainer's validation, `evaluate`, `predict` and the exported SavedModel all run a `Segmenter`, so
what is scored is what is served. Inside it: the run's input normalisation, central padding to the
network's input multiple (cropped off again), and the test-time options users know from
mmsegmentation: horizontal-flip averaging, several scales, and sliding-window tiles with overlap for
images larger than the training crops. Every option averages class probabilities (softmax), never
logits, so that passes of different sizes weigh alike.
"""
import dataclasses
import functools
import math

import numpy as np
import tensorflow as tf

from semiseg_tf.data.pipeline import normalise
from semiseg_tf.models.layers import centre_padding
from semiseg_tf.options import limits

# The scales users pass for multi-scale testing (DeepLab's and mmsegmentation's aug-test).
USUAL_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
# An image of more pixels than this (a full-resolution Cityscapes frame has half as many) goes
# through the network in tiles when no tile size is given (`auto_tile`), so that the network's
# activations take a tile's memory whatever the image's size.
DEFAULT_MAX_PASS_PIXELS = 2048 * 2048
# `max_pass_pixels` of the commands that run a trained network (predict, evaluate, export, select)
# when none is given: the most the network takes within the memory bound (`resolved`).
FROM_NETWORK = "network"


def auto_tile(max_pass_pixels):
    """The tiles of an image over `max_pass_pixels`: squares of 512 pixels, or of the largest side
    within the limit where it is smaller. (The sums held while tiling are a row of tiles high and
    the image's width: smaller tiles hold less, at a little more time.)"""
    side = min(512, math.isqrt(max_pass_pixels))
    return (side, side)


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
    """How a network is run over a whole image.

    flip: also predict the horizontal mirror and average (the mirror's output mirrored back).
    scales: resize the image by each factor (bilinear), predict, resize the probabilities back to the
      image's size, average.
    tile_size: (height, width) of sliding-window tiles, or None for one pass over the whole image;
      tiles overlap their neighbours by `tile_overlap` of their size and the overlaps are averaged.
    max_pass_pixels: with no `tile_size`, images (at each scale) of more pixels than this go in
      tiles of `auto_tile(max_pass_pixels)`; None: every image in one pass; FROM_NETWORK: the
      network's own, once `resolved`.
    """
    flip: bool = False
    scales: tuple = (1.0,)
    tile_size: tuple = None
    tile_overlap: float = 1 / 3
    max_pass_pixels: int = DEFAULT_MAX_PASS_PIXELS

    def resolved(self, arch=None, num_classes=None):
        """These options, with a `max_pass_pixels` of FROM_NETWORK made network `arch`'s budget
        (semiseg_tf/options/limits.py) or, with no network named, DEFAULT_MAX_PASS_PIXELS (the one
        pass the trainer validates with, as the papers' evaluations did)."""
        if self.max_pass_pixels != FROM_NETWORK:
            return self
        pixels = (DEFAULT_MAX_PASS_PIXELS if arch is None
                  else limits.network_budget(arch, num_classes).max_pass_pixels)
        return dataclasses.replace(self, max_pass_pixels=pixels)

    def describe(self):
        """A short human-readable summary, e.g. 'flip, scales 0.5-1.75 (6), tiles 512x1024'."""
        parts = []
        if self.flip:
            parts.append("flip")
        if tuple(self.scales) != (1.0,):
            parts.append("scales " + ",".join(f"{s:g}" for s in self.scales))
        if self.tile_size:
            parts.append(f"tiles {self.tile_size[0]}x{self.tile_size[1]} "
                         f"({self.tile_overlap:.2f} overlap)")
        elif self.max_pass_pixels not in (None, DEFAULT_MAX_PASS_PIXELS, FROM_NETWORK):
            side = auto_tile(self.max_pass_pixels)[0]
            parts.append(f"one pass up to {self.max_pass_pixels:,} pixels, {side}x{side} tiles "
                         "beyond")
        return ", ".join(parts) or "single pass"

    def tag(self):
        """A file-name-safe tag: '' for a single pass, else e.g. 'flip_scales0.5-1_tiles512x1024'."""
        parts = ["flip"] if self.flip else []
        if tuple(self.scales) != (1.0,):
            parts.append("scales" + "-".join(f"{s:g}" for s in self.scales))
        if self.tile_size:
            parts.append(f"tiles{self.tile_size[0]}x{self.tile_size[1]}")
        return "_".join(parts)

    def one_pass_pixels(self):
        """The most pixels, over all the images of one call, that a single pass of the network
        (no tiles) may take: `max_pass_pixels` over the largest scale's area. None where there is
        no such limit, or where `tile_size` tiles every image anyway."""
        if self.tile_size or self.max_pass_pixels is None:
            return None
        return int(self.max_pass_pixels / max(self.scales) ** 2)

    def images_per_pass(self, height, width, count):
        """How many of `count` images of height x width one pass takes (0: not even one)."""
        limit = self.one_pass_pixels()
        return count if limit is None else min(count, limit // max(height * width, 1))

    def to_json(self):
        return {"flip": self.flip, "scales": list(self.scales),
                "tile_size": list(self.tile_size) if self.tile_size else None,
                "tile_overlap": self.tile_overlap, "max_pass_pixels": self.max_pass_pixels}


def in_passes(call, images, options):
    """`call` (images [n, H, W, B] -> {name: tensor}) over images [N, H, W, B] in as many calls
    as one pass of `options` takes each, its outputs joined as numpy arrays. ValueError when one
    image alone is over the pass."""
    count, height, width = images.shape[:3]
    per_call = options.images_per_pass(height, width, count)
    if per_call < 1 and count:
        raise ValueError(f"{width}x{height} pixels: over the {options.one_pass_pixels():,} of one "
                         "pass of the network")
    starts = range(0, count, per_call) if count else [0]     # no images: one empty call
    outputs = [call(images[start:start + per_call]) for start in starts]
    return {key: np.concatenate([output[key].numpy() for output in outputs])
            for key in outputs[0]}


def tile_starts(size, tile, overlap):
    """Start offsets of sliding-window tiles along one axis (python ints, for tests and docs).

    Tiles of `min(tile, size)` pixels, `stride = tile - round(tile * overlap)` apart, the last one
    moved back to end at the image's edge (mmsegmentation's `slide` mode).
    """
    tile = min(tile, size)
    stride = _stride(tile, overlap)
    count = -(-max(size - tile, 0) // stride) + 1
    return [min(i * stride, size - tile) for i in range(count)]


def _stride(tile, overlap):
    return max(1, tile - int(round(tile * overlap)))


def fill_holes(labels):
    """Fills the holes of each foreground region (label != 0) of int label maps [N, H, W]: background
    pixels that no 4-connected background path links to the image border become 1. The same result
    as `scipy.ndimage.binary_fill_holes(labels != 0)` (its default structure), as a TF graph.
    """
    background = tf.equal(labels, 0)
    shape = tf.shape(labels)
    rows = tf.range(shape[1])[None, :, None]
    cols = tf.range(shape[2])[None, None, :]
    on_border = ((rows == 0) | (rows == shape[1] - 1) | (cols == 0) | (cols == shape[2] - 1))
    outside = background & on_border

    def grow(reached, _):
        # One step of 4-connected growth, kept inside the background.
        r = tf.cast(reached, tf.uint8)
        neighbours = tf.maximum(
            tf.maximum(tf.pad(r[:, 1:], [[0, 0], [0, 1], [0, 0]]),
                       tf.pad(r[:, :-1], [[0, 0], [1, 0], [0, 0]])),
            tf.maximum(tf.pad(r[:, :, 1:], [[0, 0], [0, 0], [0, 1]]),
                       tf.pad(r[:, :, :-1], [[0, 0], [0, 0], [1, 0]])))
        grown = (reached | (neighbours > 0)) & background
        return grown, tf.reduce_any(grown != reached)

    outside, _ = tf.while_loop(lambda _, changed: changed, grow, [outside, tf.constant(True)])
    return tf.where(background & ~outside, tf.ones_like(labels), tf.cast(labels != 0, labels.dtype))


class Segmenter(tf.Module):
    """A network with everything needed to use it on raw pixels.

    Args:
      network: a Keras model from normalised float images [N, h, w, B] to logits [N, h, w, C], whose
        h and w must be multiples of `input_multiple`.
      rgb_mean, rgb_std: the input normalisation the network was trained with, one value per band
        of the images in [0, 1] (so B, the number of bands, is their length).
      dtype: the images' pixel type, tf.uint8 (photos) or tf.uint16 (16-bit scans and rasters).
      options: `InferenceOptions`.
      fill_holes: two-class runs (ISIC): fill holes in the predicted foreground (see `fill_holes`).
      jit_compile: compile the network's passes with XLA (once per input size), as the trainer does
        with --jit_compile. Exports leave it off: the serving system decides.
    """

    def __init__(self, network, rgb_mean, rgb_std, input_multiple=1, options=InferenceOptions(),
                 fill_holes=False, jit_compile=False, dtype=tf.uint8):
        super().__init__(name="segmenter")
        self.network = network
        self.rgb_mean = tuple(float(v) for v in rgb_mean)
        self.rgb_std = tuple(float(v) for v in rgb_std)
        self.bands = len(self.rgb_mean)
        self.dtype = tf.as_dtype(dtype)
        self.input_multiple = int(input_multiple)
        if options.max_pass_pixels == FROM_NETWORK:
            raise ValueError("InferenceOptions(max_pass_pixels=FROM_NETWORK) must be resolved for "
                             "the network first (InferenceOptions.resolved)")
        self.options = options
        self.fill_holes = fill_holes
        self._traced = {}       # (method, one_pass, options) -> its tf.function
        self._network_pass = lambda images: self.network(images, training=False)
        if jit_compile:
            self._network_pass = tf.function(self._network_pass, jit_compile=True)

    def __call__(self, images, one_pass=False):
        """Images [N, H, W, B] of `dtype` -> {'labels': int32 [N, H, W], 'probabilities': float32
        [N, H, W, C]} (traceable: the exported graph is this). `one_pass`: the caller knows that
        the images are within `max_pass_pixels` at every scale (no tiles are considered)."""
        probabilities = self.probabilities(images, one_pass)
        labels = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        if self.fill_holes:
            labels = fill_holes(labels)
        return {"labels": labels, "probabilities": probabilities}

    def predict(self, images):
        """`__call__` as a tf.function traced once for every batch and image size within
        `max_pass_pixels` (the graph of a single pass), and once for those over it."""
        return self._traced_call("__call__", images)

    def predict_label_maps(self, images, max_probability=True):
        """`label_maps`, traced as `predict` is."""
        return self._traced_call("label_maps", images, max_probability=max_probability)

    def _traced_call(self, method, images, **options):
        images = tf.convert_to_tensor(images, self.dtype)
        one_pass = self.options.tile_size is None and self._within_pass(*images.shape[1:3])
        key = (method, one_pass, *sorted(options.items()))
        if key not in self._traced:
            self._traced[key] = tf.function(
                functools.partial(getattr(self, method), one_pass=one_pass, **options),
                input_signature=[tf.TensorSpec([None, None, None, self.bands], self.dtype)])
        return self._traced[key](images)

    def _within_pass(self, height, width):
        """Whether an image of height x width is within `max_pass_pixels` at every scale."""
        limit, scale = self.options.max_pass_pixels, max(self.options.scales)
        return limit is None or (math.floor(height * scale + 0.5)
                                 * math.floor(width * scale + 0.5) <= limit)

    def probabilities(self, images, one_pass=False):
        """Class probabilities [N, H, W, C] of images [N, H, W, B], every option applied."""
        return self._passes(images, _whole, one_pass)["probabilities"]

    def label_maps(self, images, one_pass=False, max_probability=True):
        """{'labels': int32 [N, H, W], 'max_probability': float32 [N, H, W]} (the second only if
        asked), those of `__call__`; with no flip and one scale of 1, an image predicted by tiles
        never holds its whole class probabilities, only these maps (each finished strip of rows
        is reduced to them)."""
        reduce = functools.partial(_label_maps, max_probability=max_probability)
        if self.options.flip or tuple(self.options.scales) != (1.0,):
            maps = reduce(self.probabilities(images, one_pass))
        else:
            maps = self._passes(images, reduce, one_pass)
        maps["labels"] = tf.cast(maps["labels"], tf.int32)
        if self.fill_holes:
            maps["labels"] = fill_holes(maps["labels"])
        return maps

    def _passes(self, images, reduce, one_pass=False):
        """reduce(probabilities) of every option's pass (one: a dict of maps of [N, H, W, ...]),
        the passes' probabilities averaged first where there are several."""
        size = tf.shape(images)[1:3]
        passes = []
        for scale in self.options.scales:
            # Normalised before resizing (so a scaled pass is as it always was); at scale 1 each
            # tile is normalised alone, the same values without a whole normalised copy.
            scaled = images if scale == 1 else tf.image.resize(
                self._normalise(images),
                tf.maximum(tf.cast(tf.floor(tf.cast(size, tf.float32) * scale + 0.5), tf.int32), 1),
                method="bilinear")
            prepare = self._normalise if scale == 1 else tf.identity
            for mirrored in ((False, True) if self.options.flip else (False,)):
                view = tf.reverse(scaled, axis=[2]) if mirrored else scaled
                if tuple(self.options.scales) == (1.0,) and not self.options.flip:
                    return self._tiled(view, prepare, reduce, one_pass)
                probabilities = self._tiled(view, prepare, _whole, one_pass)["probabilities"]
                if mirrored:
                    probabilities = tf.reverse(probabilities, axis=[2])
                if scale != 1:
                    probabilities = tf.image.resize(probabilities, size, method="bilinear")
                passes.append(probabilities)
        return reduce(tf.add_n(passes) / len(passes))

    def _normalise(self, images):
        return normalise(images, self.rgb_mean, self.rgb_std)

    def _one_pass(self, images):
        """Probabilities of normalised images from one network call: padded centrally with 0 (the
        mean colour) to the input multiple, the padding cropped off the output."""
        shape = tf.shape(images)
        height, width = shape[1], shape[2]
        if self.input_multiple > 1:
            top, bottom = centre_padding(height, self.input_multiple)
            left, right = centre_padding(width, self.input_multiple)
            images = tf.pad(images, [[0, 0], [top, bottom], [left, right], [0, 0]])
        logits = tf.cast(self._network_pass(images), tf.float32)
        if self.input_multiple > 1:
            logits = logits[:, top:top + height, left:left + width]
        return tf.nn.softmax(logits, axis=-1)

    def _tiled(self, images, prepare, reduce, one_pass=False):
        """reduce(probabilities) of images (`prepare` normalises a slice of them): in one pass,
        or in sliding-window tiles when `tile_size` is set or the image has more than
        `max_pass_pixels` pixels (then in tiles of `auto_tile`)."""
        def whole():
            return reduce(self._one_pass(prepare(images)))

        if self.options.tile_size:
            return self._strips(images, self.options.tile_size, prepare, reduce)
        limit = self.options.max_pass_pixels
        height, width = images.shape[1], images.shape[2]
        if one_pass or limit is None or (height is not None and width is not None
                                         and height * width <= limit):
            return whole()
        tile_size = auto_tile(limit)
        if height is not None and width is not None:
            return self._strips(images, tile_size, prepare, reduce)
        shape = tf.shape(images, out_type=tf.int64)
        return tf.cond(shape[1] * shape[2] > limit,
                       lambda: self._strips(images, tile_size, prepare, reduce), whole)

    def _strips(self, images, tile_size, prepare, reduce):
        """reduce(probabilities) in sliding-window tiles of `tile_size`, row by row of tiles (see
        `finish`)."""
        shape = tf.shape(images)
        height, width = shape[1], shape[2]
        tile_height = tf.minimum(tile_size[0], height)
        tile_width = tf.minimum(tile_size[1], width)
        # As `tile_starts`, in graph ops (image sizes are known only when images arrive).
        stride_height = tf.maximum(1, tile_height - tf.cast(
            tf.round(tf.cast(tile_height, tf.float32) * self.options.tile_overlap), tf.int32))
        stride_width = tf.maximum(1, tile_width - tf.cast(
            tf.round(tf.cast(tile_width, tf.float32) * self.options.tile_overlap), tf.int32))
        rows = (height - tile_height + stride_height - 1) // stride_height + 1
        cols = (width - tile_width + stride_width - 1) // stride_width + 1

        def top_of(row):
            return tf.minimum(row * stride_height, height - tile_height)

        def tile_probabilities(index):
            top, left = top_of(index // cols), tf.minimum(index % cols * stride_width,
                                                          width - tile_width)
            return self._one_pass(prepare(images[:, top:top + tile_height,
                                                 left:left + tile_width]))

        def add_tile_sums(index, total, count, tile):
            """The sums with `tile` (tile `index`'s probabilities) and a count of 1 added in its
            columns (the sums rebuilt around it: no copy of the tile padded to the image's width)."""
            left = tf.minimum(index % cols * stride_width, width - tile_width)
            right = left + tile_width
            return (tf.concat([total[:, :, :left], total[:, :, left:right] + tile,
                               total[:, :, right:]], axis=2),
                    tf.concat([count[:, :left], count[:, left:right] + 1, count[:, right:]],
                              axis=1))

        def finish(index, total, count, strips):
            """After a row's last tile, the rows above the next row of tiles (all, after the last
            row) are averaged, reduced and joined to `strips`, and the sums move up by as many
            rows; after any other tile, nothing (a graph without branches, which ONNX converts).
            The sums are one row of tiles high and the image's width, never the whole image."""
            row = index // cols
            next_top = tf.where(row + 1 < rows, top_of(row + 1), height)
            finished = tf.where(index % cols == cols - 1, next_top - top_of(row), 0)
            maps = reduce(total[:, :finished] / count[:finished])
            strips = maps if strips is None else {
                key: tf.concat([strips[key], value], axis=1) for key, value in maps.items()}
            return (tf.pad(total[:, finished:], [[0, 0], [0, finished], [0, 0], [0, 0]]),
                    tf.pad(count[finished:], [[0, finished], [0, 0], [0, 0]]), strips)

        def add_tile(index, total, count, strips):
            sums = add_tile_sums(index, total, count, tile_probabilities(index))
            return (index + 1, *finish(index, *sums, strips))

        # The first tile outside the loop gives the sums and maps their shapes (the classes).
        # One tile at a time: the runtime would otherwise run up to ten tiles' network passes at
        # once (their inputs do not depend on each other).
        first = tile_probabilities(tf.constant(0))
        zeros = tf.zeros(tf.stack([tf.shape(first)[0], tile_height, width, tf.shape(first)[3]]))
        total, count, strips = finish(0, *add_tile_sums(
            0, zeros, tf.zeros(tf.stack([tile_height, width, 1])), first), None)
        _, _, _, strips = tf.while_loop(
            lambda index, *_: index < rows * cols, add_tile,
            [tf.constant(1), total, count, strips], parallel_iterations=1,
            shape_invariants=[tf.TensorShape([]), total.shape, count.shape,
                              {key: tf.TensorShape([None] * value.shape.rank)
                               for key, value in strips.items()}])
        return strips


def _whole(probabilities):
    return {"probabilities": probabilities}


def _label_maps(probabilities, max_probability=True):
    """The maps `Segmenter.label_maps` keeps of each strip: labels as uint8 where the classes fit
    (a quarter of the int32 map while strips are joined), the max probability if asked."""
    labels = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    maps = {"labels": tf.cast(labels, tf.uint8) if probabilities.shape[-1] <= 256 else labels}
    if max_probability:
        maps["max_probability"] = tf.reduce_max(probabilities, axis=-1)
    return maps
