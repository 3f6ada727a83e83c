"""Images of other band counts and bit depths, read as stored (against the arrays written)."""
import io

import cv2
import numpy as np
import pytest
import tifffile

from semiseg_tf.data import native
from semiseg_tf.errors import DataError


class Bytes:
    """A file reference holding its bytes."""

    def __init__(self, data, name="image"):
        self.data, self.name = data, name

    def read(self):
        return self.data

    def __str__(self):
        return self.name


def tiff(array, **options):
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return Bytes(buffer.getvalue(), "image.tif")


@pytest.mark.parametrize("shape, dtype", [((5, 7), np.uint16), ((5, 7, 4), np.uint16),
                                          ((5, 7, 3), np.uint8), ((5, 7, 4), np.uint8)])
def test_png_and_tiff_give_the_stored_bands(shape, dtype):
    rng = np.random.default_rng(0)
    array = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    expected = array if array.ndim == 3 else array[..., None]
    read = native.decode_bands(tiff(array))
    assert read.dtype == dtype and read.shape == expected.shape
    np.testing.assert_array_equal(read, expected)
    stored = array[..., [2, 1, 0, 3][:shape[2]]] if array.ndim == 3 else array   # OpenCV's BGR
    png = Bytes(cv2.imencode(".png", stored)[1].tobytes(), "image.png")
    np.testing.assert_array_equal(native.decode_bands(png), expected)


def test_a_twelve_band_geotiff_contiguous_or_planar_is_bands_last():
    array = np.random.default_rng(1).integers(0, 65535, (6, 9, 12)).astype(np.uint16)
    contiguous = tiff(array, photometric="minisblack", planarconfig="contig")
    np.testing.assert_array_equal(native.decode_bands(contiguous), array)
    planar = tiff(np.moveaxis(array, -1, 0), photometric="minisblack", planarconfig="separate")
    np.testing.assert_array_equal(native.decode_bands(planar), array)


def test_other_pixel_types_and_damaged_tiffs_are_one_line():
    with pytest.raises(DataError, match=r"^image.tif: float32 pixels; expected 8- or 16-bit"):
        native.decode_bands(tiff(np.zeros((4, 4), np.float32)))
    with pytest.raises(DataError, match=r"^broken.tif: not a readable TIFF"):
        native.decode_bands(Bytes(b"II*\x00not a tiff", "broken.tif"))


def test_a_tiff_over_the_pixel_budget_is_refused_from_its_header():
    native.set_max_image_pixels(100)
    try:
        with pytest.raises(DataError, match=r"20x10 pixels, over the limit of 100"):
            native.decode_bands(tiff(np.zeros((10, 20, 4), np.uint16)))
    finally:
        native.set_max_image_pixels(native.DEFAULT_MAX_IMAGE_PIXELS)
