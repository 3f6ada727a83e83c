"""Reading images and labels as users download them, and turning each into a prepared sample.

Files are read from folders or straight from the official zips (`FileRef`). `convert` decodes one
image and its label, checks them (readable, same size, label values within the classes or 255) and
applies the dataset's preparation: Cityscapes' half resolution, ISIC's resize, a label id mapping.
A problem raises `DataError` with one line naming the file.

No TensorFlow here: this is plain file reading and image work, runnable (and testable) on its own;
records.py runs `convert` on several threads and writes the results.
"""
import contextlib
import dataclasses
import io
import logging
import re
import os
import threading
import warnings
import zipfile
import zlib

import cv2
import numpy as np
from PIL import Image

from semiseg_tf.errors import DataError

IGNORE_LABEL = 255

# The most pixels an image file may declare, checked from its header before it is decoded: a file
# of a few bytes can claim 20000x20000 pixels, and decoding it would take gigabytes. Pillow only
# warns below 179 megapixels. A process setting, as Pillow's own limit is; the commands set it from
# --max_image_pixels.
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
_max_image_pixels = DEFAULT_MAX_IMAGE_PIXELS


# Pillow's warning about large images would repeat what the budget above says, or warn of sizes the
# user allowed.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def set_max_image_pixels(pixels):
    global _max_image_pixels
    _max_image_pixels = int(pixels)


@dataclasses.dataclass(frozen=True)
class FileRef:
    """A file in a folder (`member` None) or a member of a zip archive (`path` is the archive)."""
    path: str
    member: str = None

    def read(self):
        try:
            if self.member is None:
                with open(self.path, "rb") as f:
                    return f.read()
            return _open_zip(self.path).read(self.member)
        except (OSError, KeyError, zipfile.BadZipFile) as error:
            raise DataError(f"{self}: cannot read ({error.__class__.__name__}: "
                            f"{getattr(error, 'strerror', None) or error})") from None

    def __str__(self):
        return self.path if self.member is None else f"{self.path}:{self.member}"


_open_zips = {}


def _open_zip(path):
    """One open ZipFile per archive and process (reading its directory again per member is slow)."""
    if path not in _open_zips:
        _open_zips[path] = zipfile.ZipFile(path)
    return _open_zips[path]


@dataclasses.dataclass(frozen=True)
class RawSample:
    """One sample as found on disk: its name, its image and its label (None: unlabelled only)."""
    name: str
    image: FileRef
    label: FileRef = None


@dataclasses.dataclass(frozen=True)
class Conversion:
    """How a dataset's raw samples become prepared ones (applied in this order).

    half_resolution: 2x2 block mean of the image, truncated to uint8, and 2x2 majority vote of the
      raw label values, ties to the lowest (Cityscapes).
    resize_to: (height, width): image and raw label resized with OpenCV's area interpolation (ISIC).
    palette: for RGB masks, ((r, g, b), ...) where entry k is the colour of class k.
    label_lut: 256 entries, raw label value -> class id or 255 (Cityscapes ids, ISIC's threshold).
    bands: images that are not 8-bit photos (TIFF and GeoTIFF files, 16-bit PNGs) are kept as
      stored, any band count, 8 or 16 bits (a user's folder); False: every image read as 8-bit RGB.
    num_classes: labels must then lie in [0, num_classes) or be 255; None: not checked here (a folder
      dataset whose class count is read from its labels).
    mask_values: the raw label values of classes 0, 1, ... (a folder's --mask_values); any other
      value but 255 is an error.
    """
    num_classes: int = None
    half_resolution: bool = False
    resize_to: tuple = None
    palette: tuple = None
    label_lut: tuple = None
    mask_values: tuple = None
    bands: bool = False


@dataclasses.dataclass(frozen=True)
class Pixels:
    """What a dataset's images hold: `bands` channels of `dtype` ('uint8' or 'uint16'). Three 8-bit
    bands are RGB photos (ImageNet's normalisation, colour augmentation, pretrained filters as
    they are); anything else is a raster of bands (per-band statistics of the training images)."""
    bands: int = 3
    dtype: str = "uint8"

    @property
    def photo(self):
        return self.bands == 3 and self.dtype == "uint8"

    @property
    def maximum(self):
        return 255 if self.dtype == "uint8" else 65535

    def __str__(self):
        if self.photo:
            return "8-bit RGB"
        return f"{self.bands} band{'s' * (self.bands > 1)} of {8 if self.dtype == 'uint8' else 16} bits"


PHOTO = Pixels()


@dataclasses.dataclass
class PreparedSample:
    """One converted sample. `image`: JPEG or PNG bytes of an RGB photo; for other pixels (see
    `Pixels`), the zlib-compressed array [H, W, bands], little-endian (`encode_bands`).
    `band_moments`: [2, bands] sums of the pixels and of their squares, scaled to [0, 1], for the
    dataset's normalisation; None for photos (ImageNet's)."""
    name: str
    image: bytes
    label: bytes           # PNG, 8-bit grey, class ids and 255; b"" for an unlabelled-only sample
    height: int
    width: int
    label_counts: np.ndarray  # [256] pixels of each label value (255 included)
    pixels: Pixels = PHOTO
    band_moments: np.ndarray = None


def _unreadable(ref, what, data, error):
    """The DataError of a file PIL cannot read (its bytes `data`, or None: read from `ref.path`),
    without PIL's `<_io.BytesIO object at 0x...>` or the path again."""
    if data is None:
        with contextlib.suppress(OSError):
            data = b"" if os.path.getsize(ref.path) == 0 else None
    if data is not None and not data:
        return DataError(f"{ref}: an empty file (0 bytes), not {what}")
    detail = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(error))
    detail = detail.replace(f" {ref.path!r}", "")
    return DataError(f"{ref}: not {what} ({detail})")


def check_pixels(ref, width, height):
    """DataError, one line, when an image of width x height is over the pixel budget."""
    if width * height > _max_image_pixels:
        raise DataError(f"{ref}: {width}x{height} pixels, over the limit of "
                        f"{_max_image_pixels:,} (--max_image_pixels); skipped before decoding")


@contextlib.contextmanager
def open_image(ref, data, what):
    """The PIL image of `data` (the bytes of the file `ref`; None: read `ref.path` as needed), its
    header read and its size checked against the pixel budget, not yet decoded; DataError if it is
    unreadable or too large."""
    source = ref.path if data is None else io.BytesIO(data)
    try:
        image = Image.open(source)
    except Image.DecompressionBombError:
        # Pillow refuses, from the header, sizes over twice its own limit; opening the header
        # again without that limit decodes nothing, and the budget below decides.
        image = _open_beyond_pillows_limit(source)
    except (OSError, ValueError) as error:
        raise _unreadable(ref, what, data, error) from None
    with image:
        check_pixels(ref, *image.size)
        try:
            yield image
        except (OSError, ValueError) as error:
            raise _unreadable(ref, what, data, error) from None


_pillow_limit = threading.Lock()


def _open_beyond_pillows_limit(source):
    """Image.open with Pillow's limit lifted, for a size the user's --max_image_pixels allows."""
    with _pillow_limit:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            if hasattr(source, "seek"):
                source.seek(0)
            return Image.open(source)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def decode_image(ref, data=None):
    """(uint8 RGB array [H, W, 3], PIL format name, PIL mode) of an image file; DataError if
    unreadable or over the pixel budget."""
    data = ref.read() if data is None else data
    with open_image(ref, data, "a readable image") as image:
        image_format, mode = image.format, image.mode
        array = np.asarray(image.convert("RGB"))
    return array, image_format, mode


TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")   # classic and BigTIFF


def decode_bands(ref, data=None):
    """The pixels of an image file as stored: uint8 or uint16 [H, W, bands], bands last (a grey
    image has one; RGBA four). TIFF and GeoTIFF files of any band count are read with tifffile, PNG
    (8- or 16-bit) with OpenCV, other formats with PIL. DataError naming the file if it is
    unreadable, over the pixel budget, or of another pixel type."""
    data = ref.read() if data is None else data
    if data[:4] in TIFF_MAGIC:
        array = _decode_tiff(ref, data)
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        with open_image(ref, data, "a readable image"):
            pass                       # the header's size, checked before decoding
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise DataError(f"{ref}: not a readable PNG")
        if array.ndim == 3:            # OpenCV's BGR(A) back to the file's RGB(A)
            array = array[..., [2, 1, 0, 3][:array.shape[2]]]
    else:
        with open_image(ref, data, "a readable image") as image:
            array = np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB", "RGBA")
                               else image)
    if array.ndim == 2:
        array = array[..., None]
    if array.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{ref}: {array.dtype} pixels; expected 8- or 16-bit unsigned integers")
    return np.ascontiguousarray(array)


def stored_as_bands(data):
    """Whether the file `data` holds more than an 8-bit photo: a TIFF (any band count), or a PNG of
    16 bits per sample (its IHDR's bit depth). 8-bit PNG, JPEG and the rest are read as RGB."""
    return data[:4] in TIFF_MAGIC or (data[:8] == b"\x89PNG\r\n\x1a\n" and data[24:25] == b"\x10")


def _decode_raster(ref, data):
    """The bands of a file that is not an 8-bit photo (see `stored_as_bands`), or None for a photo
    (an 8-bit RGB TIFF is one)."""
    if not stored_as_bands(data):
        return None
    bands = decode_bands(ref, data)
    return None if bands.dtype == np.uint8 and bands.shape[2] == 3 else bands


def decode_pixels(ref, data=None):
    """(array [H, W, bands], `Pixels`) of an image file as a user's folder dataset reads it: 8-bit
    photos as RGB (`decode_image`), rasters (TIFF, 16-bit PNG) as stored (`decode_bands`)."""
    data = ref.read() if data is None else data
    bands = _decode_raster(ref, data)
    if bands is None:
        return decode_image(ref, data)[0], PHOTO
    return bands, Pixels(bands.shape[2], bands.dtype.name)


def image_size(ref):
    """(height, width) of an image file from its header, without decoding it (TIFF through
    tifffile, which reads any band count); DataError if unreadable or over the pixel budget."""
    with open(ref.path, "rb") as f:
        magic = f.read(4)
    if magic in TIFF_MAGIC:
        with _open_tiff(ref, ref.path) as tiff:
            try:
                height, width, _, _ = _tiff_layout(ref, tiff)
            except DataError:
                raise
            except Exception as error:      # tifffile raises many kinds for an odd file
                raise DataError(f"{ref}: not a readable TIFF "
                                f"({str(error).splitlines()[0][:120]})") from None
        return height, width
    with open_image(ref, None, "a readable image") as image:
        return image.size[1], image.size[0]


def encode_bands(array):
    """The prepared form of a band array [H, W, bands] (uint8 or uint16): zlib over its
    little-endian bytes (TensorFlow's decode_compressed and decode_raw read it back)."""
    return zlib.compress(np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes(), 6)


def band_moments(array):
    """[2, bands] float64: the sums of the pixels and of their squares, scaled to [0, 1]. A block of
    rows at a time: a float copy of a whole large raster would take 4 times its memory again."""
    sums = np.zeros((2, array.shape[-1]))
    for start in range(0, array.shape[0], 256):
        block = array[start:start + 256].reshape(-1, array.shape[-1]).astype(np.float64)
        block /= np.iinfo(array.dtype).max
        sums += np.stack([block.sum(0), np.square(block).sum(0)])
    return sums


# A raster's bands: at most this many (as run.json allows), and its decoded pixels at most this many
# bytes per pixel of the pixel budget (four 16-bit bands at the whole budget), checked from the
# header before anything is decoded.
MAX_BANDS = 256
MAX_BYTES_PER_PIXEL = 8
# The TIFF compressions read (none, Deflate, LZMA), each inflated to the size its strip or tile
# declares at most; others (which would need imagecodecs, or inflate without a bound) are refused.
_TIFF_COMPRESSIONS = {1: "none", 8: "Deflate", 32946: "Deflate", 50013: "Deflate", 34925: "LZMA"}


def max_image_bytes():
    return _max_image_pixels * MAX_BYTES_PER_PIXEL


class _Inflating(Exception):
    """A strip or tile that inflates beyond its declared size (its compression's name)."""


def _bounded(decompressor, name):
    """A tifffile decompress function that inflates at most the `out` bytes tifffile asks for
    (the declared size of the strip or tile); _Inflating beyond."""
    def decompress(data, out=None, **_):
        engine = decompressor()
        limit = out if isinstance(out, int) else max_image_bytes()
        inflated = engine.decompress(bytes(data), limit)
        if getattr(engine, "unconsumed_tail", b"") or (len(inflated) >= limit
                                                       and not engine.eof):
            raise _Inflating(name)
        return inflated
    return decompress


def _tiff_layout(ref, tiff):
    """(height, width, bands, bands_first) of the first image of an open `tifffile.TiffFile`,
    checked against the budgets before anything is decoded: one image (its bands as samples,
    channels or pages), at most MAX_BANDS bands of 8 or 16 bits, at most the pixel budget, at most
    `max_image_bytes()` decoded, a compression this reader bounds. DataError, one line, else."""
    series = tiff.series[0]
    axes, shape = series.axes, series.shape
    if "Y" not in axes or "X" not in axes:
        raise DataError(f"{ref}: a TIFF of axes {axes}; expected an image's rows and columns")
    height, width = shape[axes.index("Y")], shape[axes.index("X")]
    check_pixels(ref, width, height)
    others = [(axis, size) for axis, size in zip(axes, shape) if axis not in "YX" and size > 1]
    if len(others) > 1:
        raise DataError(f"{ref}: a TIFF of axes {axes} and shape {tuple(shape)}: more than one "
                        "image (pages, depth or time); expected one image, its bands last or first")
    bands = others[0][1] if others else 1
    if bands > MAX_BANDS:
        raise DataError(f"{ref}: a TIFF of {bands} {'pages' if others[0][0] in 'IQ' else 'bands'} "
                        f"of {width}x{height}; at most {MAX_BANDS} bands of one image are read")
    if series.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{ref}: {series.dtype} pixels; expected 8- or 16-bit unsigned integers")
    decoded = height * width * bands * series.dtype.itemsize
    if decoded > max_image_bytes():
        raise DataError(f"{ref}: {width}x{height} pixels of {bands} band(s) of "
                        f"{series.dtype.itemsize * 8} bits decode to {decoded:,} bytes, over the "
                        f"limit of {max_image_bytes():,} ({MAX_BYTES_PER_PIXEL} bytes a pixel of "
                        "--max_image_pixels); skipped before decoding")
    for page in series.pages:
        compression = int(getattr(page, "compression", 1))
        if compression not in _TIFF_COMPRESSIONS:
            raise DataError(f"{ref}: a TIFF compressed with scheme {compression}, which is not "
                            "read; save it uncompressed, or with Deflate or LZMA")
    bands_first = bool(others) and axes.index(others[0][0]) < axes.index("Y")
    return height, width, bands, bands_first


def _open_tiff(ref, source):
    """tifffile.TiffFile of `source`, its decompressors bounded; DataError if it cannot be read."""
    import lzma

    import tifffile
    # A damaged file is reported in one line; tifffile's own warnings about it are not.
    logging.getLogger("tifffile").setLevel(logging.ERROR)
    codecs = tifffile.TIFF.DECOMPRESSORS._codecs
    for key, name in _TIFF_COMPRESSIONS.items():
        if key != 1 and getattr(codecs.get(key), "__name__", "") != "decompress":
            codecs[key] = _bounded(zlib.decompressobj if name == "Deflate"
                                   else lzma.LZMADecompressor, name)
    try:
        return tifffile.TiffFile(source)
    except Exception as error:      # tifffile raises many kinds for a damaged or odd file
        raise DataError(f"{ref}: not a readable TIFF ({str(error).splitlines()[0][:120]})") from None


def _decode_tiff(ref, data):
    with _open_tiff(ref, io.BytesIO(data)) as tiff:
        try:
            height, width, bands, bands_first = _tiff_layout(ref, tiff)
            array = tiff.series[0].asarray(maxworkers=1)
        except DataError:
            raise
        except _Inflating as error:
            raise DataError(f"{ref}: a {error} strip or tile inflates beyond the size its header "
                            "declares; not decoded further") from None
        except Exception as error:      # tifffile raises many kinds for a damaged or odd file
            raise DataError(f"{ref}: not a readable TIFF ({str(error).splitlines()[0][:120]})") \
                from None
    if bands_first:
        array = np.moveaxis(array, 0, -1)   # planar, or pages: bands first in the file
    return array.reshape(height, width, bands)


def decode_label(ref, palette=None):
    """The label map of a mask file as an int array [H, W]: palette PNGs give their indices, grey
    PNGs their values; RGB masks need `palette` (or equal channels)."""
    data = ref.read()
    with open_image(ref, data, "a readable label image") as image:
        mode = image.mode
        array = np.asarray(image.convert("RGB") if mode in ("RGBA", "LA") else image)
    if array.ndim == 3:
        if palette is not None:
            return _colours_to_classes(ref, array[..., :3], palette)
        if not (np.array_equal(array[..., 0], array[..., 1])
                and np.array_equal(array[..., 0], array[..., 2])):
            raise DataError(f"{ref}: an RGB mask with colours; give the class colours "
                            "(palette.txt in the folder, one 'R G B' line per class)")
        array = array[..., 0]
    if array.dtype == bool:
        array = array.astype(np.uint8)
    return array.astype(np.int64)


def _colours_to_classes(ref, rgb, palette):
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    lookup = {(r << 16) | (g << 8) | b: k for k, (r, g, b) in enumerate(palette)}
    unique, inverse = np.unique(codes, return_inverse=True)
    unknown = [u for u in unique if u not in lookup]
    if unknown:
        colours = ", ".join(f"({u >> 16}, {(u >> 8) & 255}, {u & 255})" for u in unknown[:3])
        raise DataError(f"{ref}: mask colours {colours} are not in the palette")
    return np.array([lookup[u] for u in unique], np.int64)[inverse].reshape(codes.shape)


def half_resolution_image(image):
    """2x2 block mean truncated to uint8 (skimage's downscale_local_mean then astype)."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    blocks = image[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).astype(np.float64)
    return blocks.mean(axis=(1, 3)).astype(np.uint8)


def half_resolution_label(label):
    """2x2 majority vote; a tie goes to the lowest value (the authors' argmax of counts)."""
    h, w = label.shape[0] // 2 * 2, label.shape[1] // 2 * 2
    blocks = label[:h, :w].reshape(h // 2, 2, w // 2, 2).transpose(0, 2, 1, 3).reshape(h // 2, w // 2, 4)
    values = np.unique(blocks)
    # Counts of each present value per block; argmax takes the first (lowest) of equal counts.
    counts = (blocks[..., None] == values).sum(axis=2)
    return values[np.argmax(counts, axis=-1)]


def encode_png(array):
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def convert(sample, conversion):
    """Reads, checks and prepares one `RawSample` according to a `Conversion`; a `PreparedSample`."""
    image_bytes = sample.image.read()
    bands = None
    if conversion.bands:
        bands = _decode_raster(sample.image, image_bytes)
    if bands is None:
        image, image_format, image_mode = decode_image(sample.image, image_bytes)
    else:
        image, image_format, image_mode = bands, "bands", None
    label = None
    if sample.label is not None:
        label = decode_label(sample.label, conversion.palette)
        if label.shape != image.shape[:2]:
            raise DataError(f"{sample.label}: label is {label.shape[1]}x{label.shape[0]} px but its "
                            f"image {sample.image} is {image.shape[1]}x{image.shape[0]}")
        if label.min() < 0 or label.max() > 255:
            raise DataError(f"{sample.label}: label values must lie in 0-255 "
                            f"(found {label.min()}..{label.max()})")
        if conversion.mask_values:
            label = map_mask_values(sample.label, label, conversion.mask_values)
    reencode = conversion.half_resolution or conversion.resize_to is not None
    if conversion.half_resolution:
        image = half_resolution_image(image)
        label = None if label is None else half_resolution_label(label)
    if conversion.resize_to is not None:
        size = (conversion.resize_to[1], conversion.resize_to[0])
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        if label is not None:
            label = cv2.resize(label.astype(np.uint8), size, interpolation=cv2.INTER_AREA)
    if label is not None:
        label = label.astype(np.uint8)
        if conversion.label_lut is not None:
            label = np.asarray(conversion.label_lut, np.uint8)[label]
        counts = np.bincount(label.ravel(), minlength=256)
        check_label_values(sample.label, counts, conversion.num_classes)
    else:
        counts = np.zeros(256, np.int64)
    label_bytes = b"" if label is None else encode_png(label)
    if bands is not None:
        return PreparedSample(name=sample.name, image=encode_bands(bands), label=label_bytes,
                              height=image.shape[0], width=image.shape[1], label_counts=counts,
                              pixels=Pixels(bands.shape[2], bands.dtype.name),
                              band_moments=band_moments(bands))
    # JPEG and 8-bit RGB/grey PNG files are kept byte for byte; anything else is stored as PNG.
    kept = image_format == "JPEG" or (image_format == "PNG" and image_mode in ("RGB", "L"))
    if reencode or not kept:
        image_bytes = encode_png(image)
    return PreparedSample(name=sample.name, image=image_bytes, label=label_bytes,
                          height=image.shape[0], width=image.shape[1], label_counts=counts)


def map_mask_values(ref, label, mask_values):
    """A label map of raw values (--mask_values: value k is class k) as class ids, 255 kept as
    ignore when it is not listed; DataError naming `ref` for any other value."""
    lookup = np.full(256, -1, np.int64)
    lookup[IGNORE_LABEL] = IGNORE_LABEL
    lookup[list(mask_values)] = np.arange(len(mask_values))
    mapped = lookup[label]
    if (mapped < 0).any():
        found = np.unique(label[mapped < 0])
        raise DataError(f"{ref}: mask values {', '.join(map(str, found[:5]))} are not in "
                        f"--mask_values={','.join(map(str, mask_values))}"
                        + ("" if IGNORE_LABEL in mask_values else " nor 255 (ignore)"))
    return mapped


def check_label_values(ref, counts, num_classes):
    """DataError naming `ref` if a label holds values outside [0, num_classes) other than 255."""
    if num_classes is None:
        return
    bad = [v for v in np.flatnonzero(counts) if num_classes <= v < IGNORE_LABEL]
    if bad:
        values = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise DataError(f"{ref}: label values {values} are outside the {num_classes} classes "
                        f"(0-{num_classes - 1}) and are not {IGNORE_LABEL} (ignore)")


def file_fingerprint(refs):
    """(path, size, mtime) of every distinct file behind `refs` (zip archives once): detects raw data
    that changed after it was prepared."""
    seen = {}
    for ref in refs:
        if ref is not None and ref.path not in seen:
            try:
                stat = os.stat(ref.path)
            except OSError:
                raise DataError(f"{ref.path}: missing") from None
            seen[ref.path] = (stat.st_size, int(stat.st_mtime))
    return sorted((path, size, mtime) for path, (size, mtime) in seen.items())
