"""What an export is: the SavedModel's module and its two signatures, its assets, and how it is
written (atomically) and converted to ONNX. `python -m semiseg_tf.export` is its command.
"""
import contextlib
import dataclasses
import datetime
import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf

import semiseg_tf
from semiseg_tf import checkpoints, inference, run_files, run_info, trained
from semiseg_tf.data import native, records
from semiseg_tf.errors import ConfigError, about, worded
from semiseg_tf.options import limits as limit_flags

ONNX_FILE = "model.onnx"
ONNX_OPSET = 17


# The budget of one request: its images' pixels, counted as the labels output holds them (every image
# padded to the largest), so that a large image among many small ones cannot multiply it.
DEFAULT_MAX_REQUEST_PIXELS = limit_flags.DEFAULT_MAX_REQUEST_PIXELS


def encoded_image_size(data, index):
    """int64 [height, width] of an encoded image, read from its header without decoding it (JPEG:
    TensorFlow's extract_jpeg_shape; PNG: its IHDR chunk; BMP: its info header). Any other format,
    GIF included (its frame count, which decoding multiplies, is not in its header), is refused
    with an InvalidArgumentError naming the image's index in the request."""
    length = tf.strings.length(data)

    def header(start, count):
        return tf.cast(tf.io.decode_raw(tf.strings.substr(data, start, count), tf.uint8), tf.int64)

    def jpeg():
        return tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)

    def png():                  # width, height: big-endian uint32 at bytes 16 and 20
        b = header(16, 8)
        return tf.stack([b[4] * 2 ** 24 + b[5] * 2 ** 16 + b[6] * 2 ** 8 + b[7],
                         b[0] * 2 ** 24 + b[1] * 2 ** 16 + b[2] * 2 ** 8 + b[3]])

    def bmp():                  # width, height: little-endian int32 at 18 and 22 (height < 0: top-down)
        b = header(18, 8)
        width = b[0] + b[1] * 2 ** 8 + b[2] * 2 ** 16 + b[3] * 2 ** 24
        height = b[4] + b[5] * 2 ** 8 + b[6] * 2 ** 16 + b[7] * 2 ** 24
        # Signed: a negative height means rows stored top-down; either sign counts its size.
        return tf.stack([tf.where(v >= 2 ** 31, 2 ** 32 - v, v) for v in (height, width)])

    def other():
        check = tf.debugging.Assert(False, ["image", index, "is not a JPEG, PNG or BMP file"])
        with tf.control_dependencies([check]):
            return tf.zeros([2], tf.int64)

    long_enough = length >= 26
    is_png = long_enough & tf.equal(tf.strings.substr(data, 0, 8), b"\x89PNG\r\n\x1a\n")
    is_bmp = long_enough & tf.equal(tf.strings.substr(data, 0, 2), b"BM")
    return tf.case([(tf.io.is_jpeg(data), jpeg), (is_png, png), (is_bmp, bmp)], default=other,
                   exclusive=False)


# A valid 1x1 grey PNG: what the decoder is given in place of a request over its budget.
_ONE_PIXEL_PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x00"
                  b"\x00\x00\x00:~\x9bU\x00\x00\x00\nIDATx\x9cc`\x00\x00\x00\x02\x00\x01H\xaf\xa4q"
                  b"\x00\x00\x00\x00IEND\xaeB`\x82")


class ServingModule(tf.Module):
    """What the SavedModel holds: a `Segmenter`, its two serving functions and their pixel budgets."""

    def __init__(self, segmenter, asset_paths, max_image_pixels=native.DEFAULT_MAX_IMAGE_PIXELS,
                 max_request_pixels=DEFAULT_MAX_REQUEST_PIXELS, encoded_confidence=False):
        super().__init__(name="semiseg_tf_export")
        self.segmenter = segmenter
        self.max_image_pixels = int(max_image_pixels)
        self.max_request_pixels = int(max_request_pixels)
        # Whether `encoded` also returns each image's max probability (confidence_png_bytes).
        self.encoded_confidence = bool(encoded_confidence)
        # Tracked assets are copied into the SavedModel's assets/ folder.
        self.assets = {name: tf.saved_model.Asset(path) for name, path in asset_paths.items()}
        # Images of the run's bands and pixel type: [N, H, W, bands] uint8 or uint16.
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None, None, None, segmenter.bands], segmenter.dtype, name="images")])
        if segmenter.bands == 3 and segmenter.dtype == tf.uint8:
            # Image files of other bands and bits (TIFF) have no in-graph decoder.
            self.serve_encoded = tf.function(self._serve_encoded, input_signature=[
                tf.TensorSpec([None], tf.string, name="image_bytes")])

    def _check_image(self, height, width, what):
        """The assertion that an image of height x width (int64) is within the budget; `what`: the
        items that name it in the message."""
        return tf.debugging.Assert(self._image_within(height, width),
                                   [*what, width, "x", height, "pixels, over the limit of",
                                    self.max_image_pixels, "per image"])

    def _image_within(self, height, width):
        return height * width <= self.max_image_pixels

    def _request_within(self, count, height, width):
        return count * height * width <= self.max_request_pixels

    def _check_request(self, count, height, width):
        """The assertion that `count` images of height x width (int64) are within the budget."""
        return tf.debugging.Assert(self._request_within(count, height, width),
                                   ["the request:", count, "images of", width, "x", height,
                                    "pixels (padded to the largest), over the limit of",
                                    self.max_request_pixels, "per request"])

    def _check_pass(self, count, height, width):
        """[the assertion that `count` images of height x width (int64) fit one pass of the
        network (`InferenceOptions.one_pass_pixels`)], or [] where the export tiles every image anyway."""
        limit = self.segmenter.options.one_pass_pixels()
        if limit is None:
            return []
        # An empty request counts as the one blank image that goes through the network for it.
        return [tf.debugging.Assert(tf.maximum(count, 1) * height * width <= limit, [
            "the request:", count, "images of", width, "x", height, "pixels, over the", limit,
            "pixels that serving_default takes in one pass of the network (the export's "
            "--max_pass_pixels, at its largest scale): send fewer images at a time, or image "
            "files to the encoded signature, which goes by tiles"])]

    def _serve(self, images):
        # A loaded signature does not check its inputs' shapes against its own: the graph does.
        shape = tf.shape(images, out_type=tf.int64)
        bands = self.segmenter.bands
        checks = [tf.debugging.Assert(tf.equal(shape[3], bands),
                                      [f"images: [N, H, W, {bands}] expected; got", shape])]
        checks += [self._check_image(shape[1], shape[2], ["images of"]),
                   self._check_request(shape[0], shape[1], shape[2]),
                   *self._check_pass(shape[0], shape[1], shape[2])]
        with tf.control_dependencies(checks):
            images = tf.identity(images)
        # An empty request gets empty outputs of its size: the network is given one blank image,
        # whose outputs are cut off (a graph without a branch, which ONNX converts).
        count = shape[0]
        blank = tf.zeros(tf.stack([tf.maximum(1 - count, 0), shape[1], shape[2], shape[3]]),
                         images.dtype)
        # One pass over the whole request, held within one pass's pixels (`_check_pass`): a graph
        # without tiles' branch, which ONNX converts; the encoded signature tiles large images.
        outputs = self.segmenter(tf.concat([images, blank], axis=0), one_pass=True)
        return {"labels": outputs["labels"][:count],
                "probabilities": outputs["probabilities"][:count]}

    def _serve_encoded(self, image_bytes):
        count = tf.shape(image_bytes)[0]
        # Every header first: nothing is decoded before the whole request is within its budget.
        sizes = tf.TensorArray(tf.int64, size=count, element_shape=tf.TensorShape([2]))
        for i in tf.range(count):
            size = encoded_image_size(image_bytes[i], i)
            with tf.control_dependencies([self._check_image(size[0], size[1],
                                                            ["image", i, "is"])]):
                sizes = sizes.write(i, tf.identity(size))
        sizes = tf.reshape(sizes.stack(), [-1, 2])
        largest = tf.reduce_max(tf.concat([sizes, tf.zeros([1, 2], tf.int64)], axis=0), axis=0)
        with tf.control_dependencies([self._check_request(tf.cast(count, tf.int64), largest[0],
                                                          largest[1])]):
            largest = tf.cast(tf.identity(largest), tf.int32)
        # The decoder reads the bytes only through this data dependency on the budget: a control
        # dependency alone did not always keep the runtime from starting a decode while an
        # assertion was failing. Over the budget, it gets a 1x1 PNG (and the assertion fails).
        within = (tf.reduce_all(self._image_within(sizes[:, 0], sizes[:, 1]))
                  & self._request_within(tf.cast(count, tf.int64), tf.cast(largest[0], tf.int64),
                                         tf.cast(largest[1], tf.int64)))
        image_bytes = tf.where(within, image_bytes,
                               tf.fill(tf.shape(image_bytes), tf.constant(_ONE_PIXEL_PNG)))
        labels = tf.TensorArray(tf.int32, size=count, element_shape=tf.TensorShape([None, None]))
        pngs = tf.TensorArray(tf.string, size=count, element_shape=tf.TensorShape([]))
        confidence_pngs = tf.TensorArray(tf.string, size=count, element_shape=tf.TensorShape([]))
        # One image at a time: a request's images may differ in size.
        for i in tf.range(count):
            image = records.decode_image(image_bytes[i])
            # A header that lied about the size is caught before the network runs.
            tf.debugging.assert_equal(tf.shape(image, out_type=tf.int64)[:2], sizes[i],
                                      message="an image's data do not match its header's size")
            # Its labels and confidence alone: a large image in tiles never holds its whole
            # class probabilities.
            outputs = self.segmenter.label_maps(image[None],
                                                max_probability=self.encoded_confidence)
            image_labels = outputs["labels"][0]
            pngs = pngs.write(i, tf.io.encode_png(tf.cast(image_labels, tf.uint8)[..., None]))
            if self.encoded_confidence:
                # As predict --confidence=max_probability writes it: 0-65535 for 0-1.
                surest = outputs["max_probability"][0]
                confidence_pngs = confidence_pngs.write(i, tf.io.encode_png(
                    tf.cast(tf.floor(surest * 65535 + 0.5), tf.uint16)[..., None]))
            size = tf.shape(image_labels)
            labels = labels.write(i, tf.pad(image_labels, [[0, largest[0] - size[0]],
                                                           [0, largest[1] - size[1]]],
                                            constant_values=-1))
        # An empty request gets empty outputs (TensorArray.stack of nothing has no shape to give).
        labels = tf.cond(count > 0, labels.stack, lambda: tf.zeros([0, 0, 0], tf.int32))
        result = {"labels": tf.reshape(labels, [count, largest[0], largest[1]]),
                  "label_png_bytes": pngs.stack(), "image_size": tf.cast(sizes, tf.int32)}
        if self.encoded_confidence:
            result["confidence_png_bytes"] = confidence_pngs.stack()
        return result


def check_agreement(name, agree, count, min_agreement):
    """ConfigError, one line, when a converted file labels fewer than `min_agreement` of the
    pixels of the run's `count` images as the SavedModel does (`agree`)."""
    if agree < min_agreement:
        problem = (f"{name} labels {100 * agree:.2f}% of the pixels of {count} of the run's "
                   "images as the SavedModel does; the export is not written")
        raise worded(ConfigError, f"min_agreement={min_agreement}: {problem} (min_agreement=0 "
                     "keeps such a file)", f"--min_agreement={min_agreement}: {problem} "
                     "(--min_agreement=0 keeps such a file)")


def _write_litert(model, settings, folder, scratch, module, out, min_agreement):
    """The .tflite files of `settings` into `folder`, each checked against the SavedModel's labels
    on the settings' images (one line each on `out`; ConfigError under `min_agreement`)."""
    from semiseg_tf import litert
    expected = inference.in_passes(lambda chunk: module.serve(images=tf.constant(chunk)),
                                   settings.images, model.segmenter.options)["labels"]
    for variant in settings.variants:
        content = litert.convert(model.segmenter, variant, settings.size,
                                 os.path.join(scratch, f"litert-{variant}"),
                                 settings.probabilities, settings.images)
        path = os.path.join(folder, litert.file_name(variant))
        with open(path, "wb") as f:
            f.write(content)
        labels = litert.run(content, settings.images)["labels"]
        agree = float((labels == expected).mean())
        print(f"  {litert.file_name(variant)}: {len(content) / 2 ** 20:.2f} MiB, "
              f"{settings.size[0]}x{settings.size[1]} input; labels {100 * agree:.2f}% the "
              f"SavedModel's on {len(settings.images)} training images", file=out, flush=True)
        check_agreement(litert.file_name(variant), agree, len(settings.images), min_agreement)


def default_export_dir(workdir, root=None):
    """ROOT/RUN/N: N one more than the highest numbered version already there. ROOT defaults to
    saved_models/ beside the run folder (runs/demo/cutmix -> runs/demo/saved_models/cutmix/N), so
    that the export does not depend on the directory the command was started from."""
    workdir = os.path.abspath(workdir)
    root = root or os.path.join(os.path.dirname(workdir), "saved_models")
    folder = os.path.join(root, os.path.basename(workdir))
    versions = [int(n) for n in os.listdir(folder) if n.isdigit()] if os.path.isdir(folder) else []
    return os.path.join(folder, str(max(versions, default=0) + 1))


def _write_assets(folder, model, limits):
    """The files of assets/: {name: path} (written into `folder`)."""
    info, workdir = model.info, model.workdir
    paths = {}

    def write(name, text):
        paths[name.replace(".", "_")] = os.path.join(folder, name)
        with open(paths[name.replace(".", "_")], "w") as f:
            f.write(text)

    write("class_names.txt", "".join(f"{name}\n" for name in info.class_names))
    write("palette.txt", "".join(f"{r} {g} {b}\n" for r, g, b in info.palette))
    write(run_info.RUN_INFO_FILE, json.dumps(info.to_json(), indent=2))
    with open(model.flags_path) as f:
        write(run_info.FLAGS_FILE, f.read())
    metrics_path = os.path.join(workdir, run_files.METRICS_FILE)
    if os.path.isfile(metrics_path):
        with open(metrics_path) as f:
            write(run_files.METRICS_FILE, f.read())
    write(trained.EXPORT_INFO_FILE, json.dumps({
        "workdir": workdir, "network": model.which, "checkpoint": model.checkpoint,
        "step": model.step, "options": model.options.to_json(),
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "semiseg_tf": semiseg_tf.__version__, "tensorflow": tf.__version__,
        "finished_run": os.path.isfile(metrics_path), "limits": limits,
    }, indent=2))
    return paths


def convert_to_onnx(saved_model_dir, onnx_path, images, options):
    """Converts the serving_default signature with tf2onnx (its command, in a child process: it
    logs and exits as a command) and checks the result with onnxruntime against the SavedModel
    on `images` ([N, H, W, bands] of the run's pixel type: its own images, whose probabilities are
    not saturated as random ones' are), as many at a time as one pass of inference `options` takes.

    Returns:
      (the share of pixels both label alike, the largest probability difference between them).
    """
    try:
        import onnxruntime
        import tf2onnx  # noqa: F401
    except ImportError as error:
        needs = f"needs tf2onnx and onnxruntime ({error}); pip install -e '.[onnx]'"
        raise worded(ConfigError, f"ONNX: {needs}", f"--format=onnx: {needs}") from None
    command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved_model_dir,
               "--signature_def", "serving_default", "--opset", str(ONNX_OPSET),
               "--output", onnx_path]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not os.path.isfile(onnx_path):
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit status {done.returncode}"
        raise ConfigError(f"--format=onnx: tf2onnx failed ({detail})")
    served = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    expected = inference.in_passes(lambda chunk: served(images=tf.constant(chunk)), images,
                                   options)
    converted = inference.in_passes(
        lambda chunk: dict(zip(("labels", "probabilities"), map(tf.constant, session.run(
            ["labels", "probabilities"], {"images": chunk})))), images, options)
    agree = float((converted["labels"] == expected["labels"]).mean())
    return agree, float(np.abs(converted["probabilities"] - expected["probabilities"]).max())


# The least share of pixels an ONNX or LiteRT file must label as the SavedModel does.
MIN_AGREEMENT = 0.99


@dataclasses.dataclass(frozen=True)
class LiteRT:
    """The LiteRT files of an export: `variants` (litert.VARIANTS) at input `size` (H, W), with the
    probabilities or not; `images`: [N, H, W, bands] of the run's pixel type, that calibrate int8
    and check every file against the SavedModel."""
    variants: tuple
    size: tuple
    probabilities: bool
    images: object


def export(model, export_dir=None, keras_file=True, onnx=None, out=None,
           max_image_pixels=native.DEFAULT_MAX_IMAGE_PIXELS,
           max_request_pixels=DEFAULT_MAX_REQUEST_PIXELS, encoded_confidence=False, litert=None,
           min_agreement=MIN_AGREEMENT):
    """Writes the SavedModel of `model` (a `trained.RunModel`) to `export_dir`, atomically; its
    signatures refuse images over `max_image_pixels` and requests over `max_request_pixels`;
    `encoded_confidence`: the encoded signature also returns each image's max-probability map.
    `onnx`: None, or images of the run ([N, H, W, bands]) to check model.onnx, written beside it,
    against the SavedModel; `litert`: a LiteRT, the .tflite files to write beside it. A file
    labelling fewer than `min_agreement` of those images' pixels as the SavedModel does fails the
    export (ConfigError).
    `export_dir` None: the next version beside the run
    (`default_export_dir`), and the one after if another export takes it meanwhile.

    Returns:
      the export's folder.
    """
    chosen = export_dir
    export_dir = os.path.abspath(export_dir or default_export_dir(model.workdir))
    if os.path.exists(export_dir):
        raise about(ConfigError, "export_dir", export_dir, "exists already; exports are never "
                    "overwritten (give a new VERSION folder)")
    parent = os.path.dirname(export_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(export_dir)}.tmp-", dir=parent)
    try:
        limits = {"max_image_pixels": int(max_image_pixels),
                  "max_request_pixels": int(max_request_pixels)}
        # Everything is written inside the staging folder, the writers' own temporary files too,
        # so that a failure (a full disk) leaves nothing once that folder is removed.
        scratch = os.path.join(staging, ".scratch")
        os.mkdir(scratch)
        with _temporary_files_in(scratch):
            assets = os.path.join(scratch, "assets")
            os.mkdir(assets)
            module = ServingModule(model.segmenter, _write_assets(assets, model, limits), **limits,
                                   encoded_confidence=encoded_confidence)
            signatures = {"serving_default": module.serve.get_concrete_function()}
            if hasattr(module, "serve_encoded"):
                signatures["encoded"] = module.serve_encoded.get_concrete_function()
            saved = os.path.join(staging, "saved")
            tf.saved_model.save(module, saved, signatures=signatures)
            if keras_file:
                model.network.save(os.path.join(saved, "network.keras"))
            if litert is not None:
                _write_litert(model, litert, saved, scratch, module, out or sys.stdout,
                              min_agreement)
        shutil.rmtree(scratch)
        if onnx is not None:
            agree, difference = convert_to_onnx(saved, os.path.join(saved, ONNX_FILE), onnx,
                                                model.segmenter.options)
            print(f"  {ONNX_FILE}: labels {100 * agree:.2f}% the SavedModel's on {len(onnx)} of the "
                  f"run's images, probabilities within {difference:.1e}", file=out or sys.stdout,
                  flush=True)
            check_agreement(ONNX_FILE, agree, len(onnx), min_agreement)
        # A server running as another user must read it (mkdtemp's folder is private).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(saved, 0o777 & ~umask)
        export_dir = _rename_into_place(saved, export_dir, chosen, model)
    except BaseException as error:
        if isinstance(error, tf.errors.OpError):
            # TensorFlow's writers report a full disk or a read-only folder this way.
            raise OSError(checkpoints.first_line(error)) from error
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return export_dir


def _rename_into_place(folder, export_dir, chosen, model):
    """Renames `folder` to `export_dir` (atomic: the version appears whole, or not at all). If
    another export took that version meanwhile: the next free one when the version was not
    chosen, else ConfigError."""
    for _ in range(100):
        try:
            os.rename(folder, export_dir)
            return export_dir
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            if chosen:
                raise about(ConfigError, "export_dir", export_dir, "another export wrote it "
                            "while this one was being written; nothing was overwritten (give a "
                            "new VERSION folder)") from None
            export_dir = default_export_dir(model.workdir, os.path.dirname(
                os.path.dirname(export_dir)))
    raise ConfigError(f"{os.path.dirname(export_dir)}: other exports keep taking the next "
                      "version; export again")


@contextlib.contextmanager
def _temporary_files_in(folder):
    """Python's temporary files (which Keras writes the .keras file through) go to `folder`."""
    saved, tempfile.tempdir = tempfile.tempdir, folder
    try:
        yield
    finally:
        tempfile.tempdir = saved


def folder_size(path):
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)
