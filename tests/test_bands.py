"""Images of other band counts and bit depths, read as stored (against the arrays written)."""
import io
import struct
import zlib

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

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


def hand_tiff(width, height, samples=1, pages=1, bits=8, compression=1, strip=b"\0" * 16):
    """A little-endian TIFF whose header declares `pages` pages of width x height x `samples`,
    each one strip of `compression` (1: none, 8: Deflate), every page pointing at the same strip
    bytes: a file of a few kilobytes can declare gigabytes."""
    out = bytearray(b"II*\x00\0\0\0\0") + strip
    bits_at = len(out)
    out += struct.pack(f"<{samples}H", *[bits] * samples) + b"\0" * (len(out) % 2)
    previous = 4                           # where the offset of the next IFD is written
    for _ in range(pages):
        out[previous:previous + 4] = struct.pack("<I", len(out))
        entries = [(256, 4, 1, width), (257, 4, 1, height),
                   (258, 3, samples, bits if samples == 1 else bits_at), (259, 3, 1, compression),
                   (262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, samples), (278, 4, 1, height),
                   (279, 4, 1, len(strip)), (284, 3, 1, 1)]
        out += struct.pack("<H", len(entries))
        for tag, kind, count, value in entries:
            packed = struct.pack("<HH", value, 0) if kind == 3 and count == 1 else struct.pack(
                "<I", value)
            out += struct.pack("<HHI", tag, kind, count) + packed
        previous = len(out)
        out += b"\0\0\0\0"
    return bytes(out)


def deflated_zeros(size, chunk=2 ** 24):
    """A Deflate stream of `size` zero bytes, made a chunk at a time (about a thousandth of it)."""
    engine, parts = zlib.compressobj(9), []
    for start in range(0, size, chunk):
        parts.append(engine.compress(bytes(min(chunk, size - start))))
    return b"".join(parts) + engine.flush()


# Files of a few kilobytes or megabytes declaring or inflating to gigabytes.
HOSTILE_TIFFS = {
    "pages": (lambda: hand_tiff(2000, 2000, pages=600, compression=8,
                                strip=zlib.compress(bytes(4_000_000))),
              "a TIFF of 600 pages of 2000x2000; at most 256 bands of one image are read"),
    "samples": (lambda: hand_tiff(2000, 2000, samples=200),
                "2000x2000 pixels of 200 band(s) of 8 bits decode to 800,000,000 bytes, over the "
                "limit of 320,000,000 (8 bytes a pixel of --max_image_pixels); skipped before "
                "decoding"),
    "inflating": (lambda: hand_tiff(100, 100, bits=16, compression=8,
                                    strip=deflated_zeros(2 * 2 ** 30)),
                  "a Deflate strip or tile inflates beyond the size its header declares; not "
                  "decoded further"),
}


@pytest.fixture(scope="module")
def hostile_tiffs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    for name, (make, _) in HOSTILE_TIFFS.items():
        (folder / f"{name}.tif").write_bytes(make())
    return folder


def test_tiffs_declaring_or_inflating_to_gigabytes_are_one_line_in_a_bounded_process(
        hostile_tiffs):
    """Each refused in one line by decode_bands (every raster path's decoder), the first two from
    their headers alone; a fresh process doing all three peaks under 1.5 GB, TensorFlow
    included, where the pages alone would decode to 2.4 GB and the strip inflate to 2 GiB."""
    import subprocess
    import sys

    from conftest import PEAK_BYTES
    for name, (_, message) in HOSTILE_TIFFS.items():
        path = hostile_tiffs / f"{name}.tif"
        assert path.stat().st_size < 4 * 2 ** 20
        with pytest.raises(DataError) as refused:
            native.decode_bands(native.FileRef(str(path)))
        assert str(refused.value) == f"{path}: {message}"
    probe = ("from semiseg_tf.data import native\n"
             f"for name in {list(HOSTILE_TIFFS)!r}:\n"
             "    try:\n"
             f"        native.decode_bands(native.FileRef({str(hostile_tiffs)!r} + f'/{{name}}.tif'))\n"
             "    except native.DataError:\n"
             "        pass\n"
             f"print({PEAK_BYTES})\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) < 1.5e9


def test_a_tiffs_pages_are_its_bands_when_they_are_one_images():
    """Three pages of one size: read as three bands (GDAL-like files that store bands as pages)."""
    array = np.random.default_rng(2).integers(0, 65535, (3, 6, 9)).astype(np.uint16)
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:
        for page in array:
            writer.write(page, photometric="minisblack", contiguous=True)
    np.testing.assert_array_equal(native.decode_bands(Bytes(buffer.getvalue(), "pages.tif")),
                                  np.moveaxis(array, 0, -1))


# --- Datasets of other bands and bit depths, end to end: prepare, train, evaluate, predict, export.

RASTERS = {"four_band_uint16_tiff": (4, np.uint16), "one_band_uint16_png": (1, np.uint16)}


@pytest.fixture(scope="module")
def rasters(tmp_path_factory):
    """{kind: (data folder, written arrays, trained run folder)}, each trained a few steps."""
    import os

    import dataset_fixtures as fx
    from conftest import TINY_RUN, parse_flags
    from semiseg_tf import training
    made = {}
    for kind, (bands, dtype) in RASTERS.items():
        root = tmp_path_factory.mktemp(kind)
        written = fx.write_raster_folder(root / "data", bands, dtype)
        cfg, text = parse_flags(**{**TINY_RUN, "workdir": str(root / "run"), "dataset": "folder",
                                   "data_dir": str(root / "data"),
                                   "prepared_dir": str(root / "prepared"), "n_sup": 4})
        training.Trainer(cfg, text, out=open(os.devnull, "w")).run()
        made[kind] = (root, written, str(root / "run"))
    return made


@pytest.mark.parametrize("kind", RASTERS)
def test_prepare_keeps_the_bands_and_takes_the_mean_and_std_of_the_training_images(rasters, kind):
    import json

    from semiseg_tf import run_info
    root, written, run = rasters[kind]
    bands, dtype = RASTERS[kind]
    manifest = json.loads((root / "prepared" / "manifest.json").read_text())
    pixels = np.concatenate([a.reshape(-1, bands) for a in written["train"].values()])
    scaled = pixels.astype(np.float64) / np.iinfo(dtype).max
    assert manifest["pixels"]["bands"] == bands and manifest["pixels"]["dtype"] == "uint16"
    np.testing.assert_allclose(manifest["pixels"]["mean"], scaled.mean(0), rtol=1e-9)
    np.testing.assert_allclose(manifest["pixels"]["std"], scaled.std(0), rtol=1e-6)
    info = run_info.load(run)
    assert info.pixels == native.Pixels(bands, "uint16")
    assert info.rgb_mean == tuple(manifest["pixels"]["mean"])


@pytest.mark.parametrize("kind", RASTERS)
def test_a_raster_run_evaluates_predicts_and_exports_and_the_export_serves_predicts_labels(
        rasters, kind, tmp_path):
    import subprocess
    import sys

    from conftest import run_main
    root, written, run = rasters[kind]
    done = run_main("evaluate", f"--workdir={run}", f"--output_dir={tmp_path}/eval")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mIoU" in done.stdout
    images = root / "data" / "val" / "images"
    done = run_main("predict", f"--workdir={run}", f"--input={images}", f"--output={tmp_path}/out")
    assert done.returncode == 0, done.stderr[-2000:]
    names = sorted(written["val"])
    predicted = np.stack([np.asarray(Image.open(tmp_path / "out" / "labels" / f"{n}.png"))
                          for n in names])          # palette PNGs: their indices are the classes
    overlay = cv2.imread(str(tmp_path / "out" / "overlays" / f"{names[0]}.png"))
    assert overlay.shape == (*written["val"][names[0]].shape[:2], 3)
    export_dir = tmp_path / "saved_models" / "run" / "1"
    done = run_main("export", f"--workdir={run}", f"--export_dir={export_dir}", "--nokeras_file")
    assert done.returncode == 0, done.stderr[-2000:]
    # Served by a process that imports TensorFlow only, on the arrays the files hold.
    np.save(tmp_path / "images.npy", np.stack([written["val"][n] for n in names]))
    serve = (
        "import sys, numpy as np, tensorflow as tf\n"
        f"served = tf.saved_model.load({str(export_dir)!r})\n"
        "assert 'encoded' not in served.signatures\n"
        "serve = served.signatures['serving_default']\n"
        f"labels = serve(images=tf.constant(np.load({str(tmp_path / 'images.npy')!r})))['labels']\n"
        f"np.save({str(tmp_path / 'served.npy')!r}, labels.numpy())\n"
        "assert not [m for m in sys.modules if m.startswith('semiseg_tf')]\n")
    done = subprocess.run([sys.executable, "-c", serve], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "served.npy"), predicted)


def test_a_raster_run_exports_litert_taking_its_bands_and_agreeing_with_the_saved_model(
        rasters, tmp_path):
    pytest.importorskip("ai_edge_litert")
    import tensorflow as tf

    from conftest import run_main
    from semiseg_tf import litert
    root, written, run = rasters["four_band_uint16_tiff"]
    export_dir = tmp_path / "e" / "1"
    done = run_main("export", f"--workdir={run}", f"--export_dir={export_dir}", "--format=tflite",
                    "--tflite_variants=float32", "--tflite_size=24,32", "--nokeras_file")
    assert done.returncode == 0, done.stderr[-2000:]
    images = np.stack(list(written["val"].values()))
    expected = tf.saved_model.load(str(export_dir)).signatures["serving_default"](
        images=tf.constant(images))["labels"].numpy()
    content = (export_dir / litert.file_name("float32")).read_bytes()
    details = litert.interpreter(content).get_input_details()[0]
    assert list(details["shape"]) == [1, 24, 32, 4] and details["dtype"] == np.uint16
    np.testing.assert_array_equal(litert.run(content, images)["labels"], expected)


def test_mixed_bands_colour_jitter_and_images_of_other_bands_are_one_line(rasters, tmp_path):
    import shutil

    from conftest import TINY_RUN, parse_flags, run_main
    from semiseg_tf import training
    from semiseg_tf.errors import ConfigError
    root, written, run = rasters["four_band_uint16_tiff"]
    shutil.copytree(root / "data", tmp_path / "data")
    odd = tmp_path / "data" / "images" / "train_001.tif"
    tifffile.imwrite(odd, written["train"]["train_001"][..., :3])
    done = run_main("prepare", "--dataset=folder", f"--data_dir={tmp_path}/data",
                    f"--prepared_dir={tmp_path}/prepared")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {odd}: 3 bands of 16 bits, but {tmp_path}/data/images/train_000.tif has 4 bands "
        "of 16 bits; every image of a dataset needs the same bands and bit depth")
    cfg, text = parse_flags(**{**TINY_RUN, "workdir": str(tmp_path / "run"), "dataset": "folder",
                               "data_dir": str(root / "data"),
                               "prepared_dir": str(root / "prepared"), "n_sup": 4,
                               "aug_strong_colour": "true"})
    with pytest.raises(ConfigError, match=r"^--aug_strong_colour: colour jitter needs 8-bit RGB "
                       r"images; the images of folder have 4 bands of 16 bits"):
        training.Trainer(cfg, text, out=open("/dev/null", "w"))
    assert not (tmp_path / "run" / "run.json").exists()
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.zeros((24, 32, 3), np.uint8))
    done = run_main("predict", f"--workdir={run}", f"--input={photo}", f"--output={tmp_path}/out")
    assert f"skipped: {photo}: 8-bit RGB, but the model takes images of 4 bands of 16 bits" \
        in done.stderr


def test_run_info_needs_one_mean_and_std_per_band():
    from semiseg_tf import run_info
    info = run_info.RunInfo(dataset="folder", class_names=("a", "b"), palette=((0, 0, 0),) * 2,
                            rgb_mean=(0.5,) * 3, rgb_std=(0.2,) * 3, arch="tiny_unet",
                            input_multiple=1, crop_size=(16, 16), network_options={},
                            pixels=native.Pixels(4, "uint16"))
    with pytest.raises(ValueError, match=r"^input.mean=\(0.5, 0.5, 0.5\): 4 numbers expected"):
        info.check()
    data = {**info.to_json(), "input": {**info.to_json()["input"], "mean": [0.5] * 4,
                                        "std": [0.2] * 4}}
    assert run_info.RunInfo.from_json(data).pixels == native.Pixels(4, "uint16")
    data["input"]["dtype"] = "float64"
    with pytest.raises(ValueError, match=r"^input.dtype=float64: uint8 or uint16 expected"):
        run_info.RunInfo.from_json(data)


def test_display_rgb_stretches_each_shown_band_between_its_percentiles():
    from semiseg_tf import visualise
    image = np.random.default_rng(2).integers(0, 65535, (10, 12, 4)).astype(np.uint16)
    shown = visualise.display_rgb(image)
    for band in range(3):
        values = image[..., band].astype(np.float64)
        low, high = np.percentile(values, 2), np.percentile(values, 98)
        expected = np.clip((values - low) / (high - low), 0, 1) * 255 + 0.5
        np.testing.assert_array_equal(shown[..., band], expected.astype(np.uint8))
    grey = visualise.display_rgb(image[..., :1])
    assert grey.shape == (10, 12, 3) and (grey == grey[..., :1]).all()
    photo = image[..., :3].astype(np.uint8)
    assert visualise.display_rgb(photo) is photo


def test_every_raster_command_refuses_the_hostile_tiffs_in_one_line(rasters, hostile_tiffs,
                                                                     tmp_path):
    """prepare (which train runs), predict and evaluate --images of a 4-band run: each hostile
    file named in one line (predict skips it and goes on; prepare and evaluate stop)."""
    import shutil

    from conftest import run_main
    root, written, run = rasters["four_band_uint16_tiff"]
    for name, (_, message) in HOSTILE_TIFFS.items():
        data = tmp_path / name / "data"
        shutil.copytree(root / "data", data)
        bomb = data / "images" / "train_002.tif"
        shutil.copy(hostile_tiffs / f"{name}.tif", bomb)
        done = run_main("prepare", "--dataset=folder", f"--data_dir={data}",
                        f"--prepared_dir={tmp_path / name / 'prepared'}")
        assert done.returncode == 2
        assert done.stderr.strip().splitlines()[-1] == f"error: {bomb}: {message}", name
        pool = tmp_path / name / "pool"
        pool.mkdir()
        shutil.copy(hostile_tiffs / f"{name}.tif", pool / "bomb.tif")
        shutil.copy(root / "data" / "val" / "images" / "val_000.tif", pool / "good.tif")
        done = run_main("predict", f"--workdir={run}", f"--input={pool}",
                        f"--output={tmp_path / name / 'out'}")
        assert done.returncode == 1 and f"skipped: {pool}/bomb.tif: {message}" in done.stderr
        assert (tmp_path / name / "out" / "labels" / "good.png").exists()
        masks = tmp_path / name / "masks"
        masks.mkdir()
        for stem in ("bomb", "good"):
            shutil.copy(root / "data" / "val" / "masks" / "val_000.png", masks / f"{stem}.png")
        done = run_main("evaluate", f"--workdir={run}", f"--images={pool}", f"--masks={masks}",
                        f"--output_dir={tmp_path / name / 'eval'}")
        assert done.returncode == 2 and f"{pool}/bomb.tif: {message}" in done.stderr, done.stderr
