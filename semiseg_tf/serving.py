"""What an export is: the SavedModel's module and its two signatures, its assets, and how it is
written (atomically) and converted to ONNX. `python -m semiseg_tf.export` is its command.
"""
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf

import semiseg_tf
from semiseg_tf import checkpoints, run_info, trained
from semiseg_tf.data import records
from semiseg_tf.errors import ConfigError

METRICS_FILE = "metrics.json"
ONNX_FILE = "model.onnx"
ONNX_OPSET = 17


class ServingModule(tf.Module):
    """What the SavedModel holds: a `Segmenter` and its two serving functions."""

    def __init__(self, segmenter, asset_paths):
        super().__init__(name="semiseg_tf_export")
        self.segmenter = segmenter
        # Tracked assets are copied into the SavedModel's assets/ folder.
        self.assets = {name: tf.saved_model.Asset(path) for name, path in asset_paths.items()}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve(self, images):
        outputs = self.segmenter(images)
        return {"labels": outputs["labels"], "probabilities": outputs["probabilities"]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_encoded(self, image_bytes):
        count = tf.shape(image_bytes)[0]
        decoded = tf.TensorArray(tf.uint8, size=count, infer_shape=False,
                                 element_shape=tf.TensorShape([None, None, 3]))
        sizes = tf.TensorArray(tf.int32, size=count)
        for i in tf.range(count):
            image = records.decode_image(image_bytes[i])
            decoded = decoded.write(i, image)
            sizes = sizes.write(i, tf.shape(image)[:2])
        sizes = tf.reshape(sizes.stack(), [-1, 2])
        largest = tf.reduce_max(tf.concat([sizes, [[0, 0]]], axis=0), axis=0)
        labels = tf.TensorArray(tf.int32, size=count, element_shape=tf.TensorShape([None, None]))
        pngs = tf.TensorArray(tf.string, size=count)
        # One image at a time: a request's images may differ in size.
        for i in tf.range(count):
            image_labels = self.segmenter(decoded.read(i)[None])["labels"][0]
            pngs = pngs.write(i, tf.io.encode_png(tf.cast(image_labels, tf.uint8)[..., None]))
            size = tf.shape(image_labels)
            labels = labels.write(i, tf.pad(image_labels, [[0, largest[0] - size[0]],
                                                           [0, largest[1] - size[1]]],
                                            constant_values=-1))
        return {"labels": tf.reshape(labels.stack(), [count, largest[0], largest[1]]),
                "label_png_bytes": pngs.stack(), "image_size": sizes}


def default_export_dir(workdir, root=None):
    """ROOT/RUN/N: N one more than the highest numbered version already there. ROOT defaults to
    saved_models/ beside the run folder (runs/demo/cutmix -> runs/demo/saved_models/cutmix/N), so
    that the export does not depend on the directory the command was started from."""
    workdir = os.path.abspath(workdir)
    root = root or os.path.join(os.path.dirname(workdir), "saved_models")
    folder = os.path.join(root, os.path.basename(workdir))
    versions = [int(n) for n in os.listdir(folder) if n.isdigit()] if os.path.isdir(folder) else []
    return os.path.join(folder, str(max(versions, default=0) + 1))


def _write_assets(folder, model):
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
    metrics_path = os.path.join(workdir, METRICS_FILE)
    if os.path.isfile(metrics_path):
        with open(metrics_path) as f:
            write(METRICS_FILE, f.read())
    write(trained.EXPORT_INFO_FILE, json.dumps({
        "workdir": workdir, "network": model.which, "checkpoint": model.checkpoint,
        "step": model.step, "options": model.options.to_json(),
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "semiseg_tf": semiseg_tf.__version__, "tensorflow": tf.__version__,
        "finished_run": os.path.isfile(metrics_path),
    }, indent=2))
    return paths


def convert_to_onnx(saved_model_dir, onnx_path):
    """Converts the serving_default signature with tf2onnx (its command, in a child process: it
    logs and exits as a command) and checks the result with onnxruntime against the SavedModel.

    Returns:
      the largest probability difference between the two on a test image.
    """
    try:
        import onnxruntime
        import tf2onnx  # noqa: F401
    except ImportError as error:
        raise ConfigError(f"--format=onnx: needs tf2onnx and onnxruntime ({error}); "
                                 "pip install -e '.[onnx]'") from None
    command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved_model_dir,
               "--signature_def", "serving_default", "--opset", str(ONNX_OPSET),
               "--output", onnx_path]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not os.path.isfile(onnx_path):
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit status {done.returncode}"
        raise ConfigError(f"--format=onnx: tf2onnx failed ({detail})")
    image = np.random.default_rng(0).integers(0, 256, (1, 67, 91, 3), dtype=np.uint8)
    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    onnx_probabilities = session.run(["probabilities"], {"images": image})[0]
    served = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    tf_probabilities = served(images=tf.constant(image))["probabilities"].numpy()
    return float(np.abs(onnx_probabilities - tf_probabilities).max())


def export(model, export_dir, keras_file=True, onnx=False, out=None):
    """Writes the SavedModel of `model` (a `trained.RunModel`) to `export_dir`, atomically
    (`onnx`: and model.onnx beside it).

    Returns:
      export_dir.
    """
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir):
        raise ConfigError(f"--export_dir={export_dir}: exists already; exports are never "
                                 "overwritten (give a new VERSION folder)")
    parent = os.path.dirname(export_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(export_dir)}.tmp-", dir=parent)
    try:
        with tempfile.TemporaryDirectory() as asset_folder:
            module = ServingModule(model.segmenter, _write_assets(asset_folder, model))
            signatures = {"serving_default": module.serve.get_concrete_function(),
                          "encoded": module.serve_encoded.get_concrete_function()}
            tf.saved_model.save(module, staging, signatures=signatures)
        if keras_file:
            model.network.save(os.path.join(staging, "network.keras"))
        if onnx:
            difference = convert_to_onnx(staging, os.path.join(staging, ONNX_FILE))
            print(f"  {ONNX_FILE}: onnxruntime's probabilities differ from the SavedModel's by at "
                  f"most {difference:.1e}", file=out or sys.stdout, flush=True)
        # mkdtemp's folder is private (0700); a server running as another user must read it.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        # The rename is atomic: the version folder appears whole, or not at all.
        os.rename(staging, export_dir)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, tf.errors.OpError):
            # TensorFlow's writers report a full disk or a read-only folder this way.
            raise OSError(checkpoints.first_line(error)) from error
        raise
    return export_dir


def folder_size(path):
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)
