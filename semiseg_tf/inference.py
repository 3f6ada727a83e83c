"""The one inference path: uint8 RGB images of any size in, class maps and probabilities out.

The trainer's validation, `evaluate`, `predict` and the exported SavedModel all run a `Segmenter`, so
what is scored is what is served. Inside it: the run's input normalisation, central padding to the
network's input multiple (cropped off again), and the test-time options users know from
mmsegmentation: horizontal-flip averaging, several scales, and sliding-window tiles with overlap for
images larger than the training crops. Every option averages class probabilities (softmax), never
logits, so that passes of different sizes weigh alike.
"""
import dataclasses

import tensorflow as tf

from semiseg_tf.data.pipeline import normalise
from semiseg_tf.models.layers import centre_padding

# The scales users pass for multi-scale testing (DeepLab's and mmsegmentation's aug-test).
USUAL_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
    """How a network is run over a whole image.

    flip: also predict the horizontal mirror and average (the mirror's output mirrored back).
    scales: resize the image by each factor (bilinear), predict, resize the probabilities back to the
      image's size, average.
    tile_size: (height, width) of sliding-window tiles, or None for one pass over the whole image;
      tiles overlap their neighbours by `tile_overlap` of their size and the overlaps are averaged.
    """
    flip: bool = False
    scales: tuple = (1.0,)
    tile_size: tuple = None
    tile_overlap: float = 1 / 3

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
        return ", ".join(parts) or "single pass"

    def tag(self):
        """A file-name-safe tag: '' for a single pass, else e.g. 'flip_scales0.5-1_tiles512x1024'."""
        parts = ["flip"] if self.flip else []
        if tuple(self.scales) != (1.0,):
            parts.append("scales" + "-".join(f"{s:g}" for s in self.scales))
        if self.tile_size:
            parts.append(f"tiles{self.tile_size[0]}x{self.tile_size[1]}")
        return "_".join(parts)

    def to_json(self):
        return {"flip": self.flip, "scales": list(self.scales),
                "tile_size": list(self.tile_size) if self.tile_size else None,
                "tile_overlap": self.tile_overlap}


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
        self.options = options
        self.fill_holes = fill_holes
        self._traced = None
        self._network_pass = lambda images: self.network(images, training=False)
        if jit_compile:
            self._network_pass = tf.function(self._network_pass, jit_compile=True)

    def __call__(self, images):
        """Images [N, H, W, B] of `dtype` -> {'labels': int32 [N, H, W], 'probabilities': float32
        [N, H, W, C]} (traceable: the exported graph is this)."""
        probabilities = self.probabilities(images)
        labels = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        if self.fill_holes:
            labels = fill_holes(labels)
        return {"labels": labels, "probabilities": probabilities}

    def predict(self, images):
        """`__call__` as one tf.function traced once for every batch and image size."""
        if self._traced is None:
            self._traced = tf.function(self.__call__, input_signature=[
                tf.TensorSpec([None, None, None, self.bands], self.dtype)])
        return self._traced(tf.convert_to_tensor(images, self.dtype))

    def probabilities(self, images):
        """Class probabilities [N, H, W, C] of images [N, H, W, B], every option applied."""
        images = normalise(images, self.rgb_mean, self.rgb_std)
        size = tf.shape(images)[1:3]
        passes = []
        for scale in self.options.scales:
            scaled = images if scale == 1 else tf.image.resize(
                images, tf.maximum(tf.cast(tf.floor(tf.cast(size, tf.float32) * scale + 0.5),
                                           tf.int32), 1), method="bilinear")
            for mirrored in ((False, True) if self.options.flip else (False,)):
                view = tf.reverse(scaled, axis=[2]) if mirrored else scaled
                probabilities = self._tiled(view)
                if mirrored:
                    probabilities = tf.reverse(probabilities, axis=[2])
                if scale != 1:
                    probabilities = tf.image.resize(probabilities, size, method="bilinear")
                passes.append(probabilities)
        return passes[0] if len(passes) == 1 else tf.add_n(passes) / len(passes)

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

    def _tiled(self, images):
        """Probabilities of normalised images, in sliding-window tiles when `tile_size` is set."""
        if not self.options.tile_size:
            return self._one_pass(images)
        shape = tf.shape(images)
        height, width = shape[1], shape[2]
        tile_height = tf.minimum(self.options.tile_size[0], height)
        tile_width = tf.minimum(self.options.tile_size[1], width)
        # As `tile_starts`, in graph ops (image sizes are known only when images arrive).
        stride_height = tf.maximum(1, tile_height - tf.cast(
            tf.round(tf.cast(tile_height, tf.float32) * self.options.tile_overlap), tf.int32))
        stride_width = tf.maximum(1, tile_width - tf.cast(
            tf.round(tf.cast(tile_width, tf.float32) * self.options.tile_overlap), tf.int32))
        rows = (height - tile_height + stride_height - 1) // stride_height + 1
        cols = (width - tile_width + stride_width - 1) // stride_width + 1

        def tile_sums(index):
            """Tile `index`'s probabilities and a count of 1, both padded to the image's size."""
            top = tf.minimum(index // cols * stride_height, height - tile_height)
            left = tf.minimum(index % cols * stride_width, width - tile_width)
            tile = self._one_pass(images[:, top:top + tile_height, left:left + tile_width])
            paddings = [[top, height - top - tile_height], [left, width - left - tile_width]]
            return (tf.pad(tile, [[0, 0]] + paddings + [[0, 0]]),
                    tf.pad(tf.ones([tile_height, tile_width, 1]), paddings + [[0, 0]]))

        def add_tile(index, total, count):
            tile_total, tile_count = tile_sums(index)
            return index + 1, total + tile_total, count + tile_count

        # The first tile outside the loop gives the sums their shape (the number of classes).
        total, count = tile_sums(tf.constant(0))
        _, total, count = tf.while_loop(lambda index, *_: index < rows * cols, add_tile,
                                        [tf.constant(1), total, count])
        return total / count
