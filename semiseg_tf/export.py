"""Export a trained run for serving: a SavedModel whose graph takes raw pixels.

  python -m semiseg_tf.export --workdir=runs/cutmix                # runs/saved_models/cutmix/1
  python -m semiseg_tf.export --workdir=runs/cutmix --export_dir=runs/saved_models/cutmix/2 --flip

The graph holds the whole inference path (normalisation, padding, and the --flip / --scales /
--tile_size options given here), so a client sends raw pixels or encoded images. Signatures:
  serving_default  images uint8 [N, H, W, 3], any H, W (another channel count is refused); a run
                   on other images (a folder of TIFFs, 16-bit PNGs) takes its own: [N, H, W, bands],
                   uint8 or uint16, as run.json's "input" says
                   -> labels int32 [N, H, W], probabilities float32 [N, H, W, C]
  encoded          (RGB photo runs only) image_bytes string [N] (JPEG, PNG or BMP files; base64 in
                   a REST request)
                   -> labels int32 [N, H, W] (-1 beyond an image smaller than the batch's largest),
                      label_png_bytes string [N] (one-channel PNG, values = class ids; TF
                        Serving's REST API sends a '_bytes' output base64-encoded),
                      image_size int32 [N, 2] (height, width)
Both refuse, with an InvalidArgumentError naming the size and the limit, an image over
--max_image_pixels and a request over --max_request_pixels (N x the largest image's pixels); the
encoded signature reads every size from the file headers before it decodes anything.
assets/ holds the class names, the palette, run.json, the run's flags and its final metrics, and
export.json (what was exported, with which options); network.keras beside them is the network alone,
for fine-tuning in Keras. The export is written to a temporary folder and renamed into place, so a
server watching saved_models/NAME/ never sees a half-written version.
"""
import importlib.util
import os
import sys
import time

from absl import app, flags, logging

from semiseg_tf import config, options
from semiseg_tf.errors import ConfigError
from semiseg_tf.options import inference as inference_flags
from semiseg_tf.options import limits as limits_flags
from semiseg_tf.options import model as model_flags
from semiseg_tf.options import run as run_flags

# The modules that load TensorFlow are imported in the functions that use them, so that --help
# answers without loading it.

TOPIC = options.Topic("Export", __name__)
TOPIC.define("string", "export_dir", None, "Where to write the SavedModel, a VERSION folder in TF "
        "Serving's layout (saved_models/NAME/VERSION). Default: saved_models/RUN/N beside the run "
        "folder (runs/x/RUN -> runs/x/saved_models/RUN/N), N one more than the highest version "
        "already there. An existing folder is never overwritten.")
FORMATS = ("saved_model", "onnx", "tflite")
# What each format beyond the SavedModel needs installed: the setup.cfg extra, and its modules.
EXTRAS = {"onnx": ("onnx", ("tf2onnx", "onnxruntime")), "tflite": ("litert", ("ai_edge_litert",))}
TOPIC.define("list", "format", ["saved_model"], "Comma-separated, any of: saved_model (always "
        "written: the SavedModel and network.keras); onnx (also model.onnx in the export folder, "
        "the serving_default graph converted by tf2onnx and checked with onnxruntime against the "
        "SavedModel; needs pip install -e .[onnx]); tflite (also LiteRT files, model-VARIANT.tflite, "
        "one per --tflite_variants, at the fixed input size --tflite_size, each checked against "
        "the SavedModel; needs pip install -e .[litert]). E.g. --format=onnx,tflite.")
TOPIC.define("list", "tflite_variants", ["float32"], "--format=tflite: the LiteRT files to "
        "write: float32; float16 (weights stored as float16, half the size); dynamic_int8 "
        "(weights int8, a quarter); int8 (weights and activations int8, calibrated on "
        "--tflite_representative_images of the run's training images).")
TOPIC.define("string", "tflite_size", None, "--format=tflite: the files' fixed input size 'H,W' "
        "(on-device runtimes prefer one). Default: the size of the run's images where they share "
        "one, else its --crop_size.")
TOPIC.define("boolean", "tflite_probabilities", False, "--format=tflite: the files also return the "
        "class probabilities (float32 [1, H, W, C]; the labels alone are C x 4 times smaller to "
        "hand on).")
TOPIC.define("integer", "tflite_representative_images", 32, "--format=tflite: how many of the "
        "run's training images (resized to --tflite_size) calibrate the int8 variant and check "
        "every variant against the SavedModel.")
TOPIC.define("integer", "max_request_pixels", limits_flags.DEFAULT_MAX_REQUEST_PIXELS, "The most pixels "
        "one request to the export may hold, counted as N images x the largest one's pixels (the "
        "labels output pads every image to the largest); a larger request is refused before "
        f"anything is decoded. A request to the encoded signature costs about "
        f"{limits_flags.REQUEST_BYTES_PER_PIXEL} bytes a pixel at peak beside the server's "
        f"{limits_flags.PROCESS_BYTES / 1e9:.1f} GB: the default keeps one under "
        f"{limits_flags.MEMORY_BOUND_BYTES / 1e9:.0f} GB (lowered, as --max_image_pixels is, for "
        "a network larger than the demo's). serving_default also refuses a request of "
        "more pixels in all than one pass of the network takes (--max_pass_pixels).")
TOPIC.define("boolean", "encoded_confidence", False, "The encoded signature also returns "
        "confidence_png_bytes: each image's max class probability as a 16-bit greyscale PNG "
        "(0-65535 for 0-1), as predict --confidence=max_probability writes it.")
# serving.MIN_AGREEMENT (a test holds the two equal).
TOPIC.define("float", "min_agreement", 0.99, "--format=onnx or tflite: each converted file must "
        "label at least this share of the pixels of the run's own images (its training images, "
        "at the file's input size) as the SavedModel does, or the export fails, naming the file "
        "and its share; 0 keeps any file.")
TOPIC.define("integer", "check_images", 8, "--format=onnx: how many of the run's training images "
        "(at its crop size) check model.onnx against the SavedModel (--format=tflite checks on "
        "its --tflite_representative_images).")
TOPIC.define("boolean", "keras_file", True, "Also write network.keras (the network alone, on "
        "normalised images) into the export folder, for fine-tuning in Keras.")


# The flags that apply to one format only.
FORMAT_FLAGS = {"tflite": ("tflite_variants", "tflite_size", "tflite_probabilities",
                           "tflite_representative_images"),
                "onnx": ("check_images",)}


def check_flags(values):
    """The formats asked for (a tuple of FORMATS); ConfigError, one line, for an unknown format,
    a flag given for a format not asked for, or a format whose packages are missing, before any
    work is done."""
    formats = tuple(dict.fromkeys(values.format))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"--format={','.join(values.format)}: expected some of "
                          f"{', '.join(FORMATS)}, comma-separated")
    for fmt, names in FORMAT_FLAGS.items():
        given = [name for name in names if values[name].present]
        if given and fmt not in formats:
            raise ConfigError(f"--{given[0]}: applies to --format={fmt}, which was not asked for "
                              f"(--format={','.join(formats)})")
    for fmt, (extra, modules) in EXTRAS.items():
        missing = [m for m in modules if fmt in formats and importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(f"--format={fmt}: needs {' and '.join(missing)}, not installed: "
                              f"pip install -e '.[{extra}]'")
    if not 0 <= values.min_agreement <= 1:
        raise ConfigError(f"--min_agreement={values.min_agreement}: must lie in [0, 1]")
    for name in ("max_image_pixels", "max_request_pixels", "check_images",
                 "tflite_representative_images"):
        if values[name].value <= 0:
            raise ConfigError(f"--{name}={values[name].value}: must be positive")
    return formats


def serving_hint(export_dir):
    """How TF Serving serves the export: it reads MODEL/VERSION folders, VERSION a number."""
    version, folder = os.path.basename(export_dir), os.path.dirname(export_dir)
    if not version.isdigit():
        return (f"  serve it:  TF Serving reads numbered versions: move it to MODEL/1 (e.g. "
                f"saved_models/{version}/1) and serve saved_models/{version}")
    name = os.path.basename(folder)
    return (f"  serve it:  docker run -p 8501:8501 -v {folder}:/models/{name} -e MODEL_NAME={name} "
            "tensorflow/serving")


def main(argv):
    from semiseg_tf import serving, trained
    from semiseg_tf.training import builders
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # TF's INFO lines about saving would bury the result
    values = flags.FLAGS
    try:
        if values.saved_model:
            raise ConfigError("--saved_model: export reads a training run; give --workdir")
        if not values.workdir:
            raise ConfigError("--workdir: give the training run to export")
        formats = check_flags(values)
        start = time.perf_counter()
        model = trained.open_model(workdir=values.workdir, network=values.network,
                                   checkpoint=values.checkpoint,
                                   options=config.inference_options(values))
        if values.encoded_confidence and not model.info.pixels.photo:
            raise ConfigError(f"--encoded_confidence: the encoded signature reads 8-bit RGB image "
                              f"files; this run's images have {model.info.pixels}, and its export "
                              "has no encoded signature")
        budgets = {name: config.network_limit(values, name, model.info)
                   for name in ("max_image_pixels", "max_request_pixels")}
        print(f"exporting {model.description}", flush=True)
        source = None
        if "onnx" in formats or "tflite" in formats:
            cfg = config.from_flags(config.read_run_flags(model.flags_path))
            source = builders.build_source(cfg, out=sys.stderr)
        litert = _litert_settings(model, values, source, budgets) if "tflite" in formats else None
        onnx = None
        if "onnx" in formats:
            onnx = training_images(source, values.check_images, tuple(model.info.crop_size))
        export_dir = serving.export(model, values.export_dir, keras_file=values.keras_file,
                                    onnx=onnx, litert=litert,
                                    **budgets,
                                    encoded_confidence=values.encoded_confidence,
                                    min_agreement=values.min_agreement)
    except OSError as error:
        # A full disk or a read-only folder: serving.export has removed its temporary folder.
        target = values.export_dir or "the export folder"
        detail = error.strerror or str(error)
        print(f"error: {target}: cannot write the export ({detail})", file=sys.stderr)
        return 2
    print(f"wrote {export_dir} ({serving.folder_size(export_dir) / 2 ** 20:.1f} MiB, "
          f"{time.perf_counter() - start:.1f}s)\n{serving_hint(export_dir)}\n"
          f"  use it:    python -m semiseg_tf.predict --saved_model={export_dir} --input=... "
          "--output=...")
    return 0


def _litert_settings(model, values, source, budgets):
    """serving.LiteRT of the --tflite_* flags, with the run's training images (of `source`, its
    data source) as representative images, within the export's `budgets` ({'max_image_pixels',
    'max_request_pixels'}); ConfigError naming a bad flag."""
    from semiseg_tf import litert, serving
    variants = tuple(values.tflite_variants)
    unknown = [v for v in variants if v not in litert.VARIANTS]
    if unknown or not variants:
        raise ConfigError(f"--tflite_variants={','.join(variants)}: expected some of "
                          f"{', '.join(litert.VARIANTS)}")
    if values.tflite_size:
        size = options.parse_ints(2)("tflite_size", values.tflite_size)
    else:
        size = tuple(source.fixed_image_size or model.info.crop_size)
    count = values.tflite_representative_images
    # The file serves one image of this size, and its check holds `count` of them at once: both
    # within the budgets the export states for its own requests.
    pixels = size[0] * size[1]
    if pixels > budgets["max_image_pixels"]:
        raise ConfigError(f"--tflite_size={size[0]},{size[1]}: {pixels} pixels, over "
                          f"--max_image_pixels={budgets['max_image_pixels']}")
    if count * pixels > budgets["max_request_pixels"]:
        raise ConfigError(f"--tflite_representative_images={count}: {count} images of "
                          f"{size[0]}x{size[1]} are {count * pixels} pixels, over "
                          f"--max_request_pixels={budgets['max_request_pixels']}")
    images = training_images(source, count, size)
    return serving.LiteRT(variants, size, values.tflite_probabilities, images)


def training_images(source, count, size):
    """`count` of the training images of `source` (a run's data source, read as its flags say),
    spread over the set, resized to `size` (H, W): [count, H, W, bands] of its pixel type."""
    import cv2
    import numpy as np
    count = min(count, source.num_train)
    images = []
    for i in range(count):
        image, _ = source.read_train(np.int64(i * source.num_train // count))
        image = np.asarray(image)
        resized = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        images.append(resized.reshape(*size, image.shape[-1]))     # OpenCV drops a single band
    return np.stack(images)


COMMAND_TOPICS = (run_flags.TOPIC, model_flags.TOPIC, inference_flags.TOPIC, TOPIC,
                  limits_flags.TOPIC)

if __name__ == "__main__":
    flags.FLAGS.set_default("alsologtostderr", False)
    options.run_command(main, COMMAND_TOPICS)
