"""A trained model for evaluate and predict: a run's network through the inference path, or an
exported SavedModel (whose graph holds the same path, options baked in). Both answer
`predict(uint8 images) -> {'labels', 'probabilities'}` and know their run's classes and colours.
"""
import json
import os

import tensorflow as tf

from semiseg_tf import inference, models, run_info
from semiseg_tf.checkpoints import CHECKPOINTS_DIR, first_line
from semiseg_tf.config import ConfigError
from semiseg_tf.errors import DataError, about, worded

# What an export adds to the SavedModel's assets/ besides the run's own files.
EXPORT_INFO_FILE = "export.json"


def latest_checkpoint(workdir):
    """The path of the run's latest checkpoint; ConfigError when it has none."""
    path = tf.train.latest_checkpoint(os.path.join(workdir, CHECKPOINTS_DIR))
    if path is None:
        raise about(ConfigError, "workdir", workdir, f"no checkpoint in {workdir}/{CHECKPOINTS_DIR} "
                    "(has the run trained a step?)")
    return path


def checkpoint_step(path):
    """The training step a checkpoint was saved at (None if it does not say)."""
    try:
        return int(tf.train.load_variable(path, "step/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.NotFoundError, ValueError):
        return None


def load_network(workdir, info, which, checkpoint=None):
    """Builds the run's network and restores `which` ('teacher' or 'student') into it.

    Returns:
      (network, checkpoint path, step).
    """
    network = models.build(info.arch, info.num_classes, bands=info.pixels.bands,
                           **info.network_options)
    # A training still running in the folder removes old checkpoints as it saves new ones: the
    # latest one may go while it is read, and the newest one then is read instead.
    for attempt in range(3):
        path = checkpoint or latest_checkpoint(workdir)
        if not _complete(path):
            if checkpoint:
                raise about(ConfigError, "checkpoint", path, f"no such checkpoint (expected "
                            f"{path}.index and its data)")
            continue
        try:
            tf.train.Checkpoint(**{which: network}).restore(path).expect_partial() \
                .assert_existing_objects_matched()
            step = checkpoint_step(path)
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            if not _complete(path):
                continue
            raise ConfigError(f"{path}: does not hold the {which} {info.arch} with "
                              f"{info.num_classes} classes that {workdir}/{run_info.RUN_INFO_FILE} "
                              f"describes ({first_line(error)})") from None
        return network, path, step
    removed = (f"{path}: removed while it was being read, {attempt + 1} times (a training running "
               "in the run folder replaces its checkpoints); run again, or give ")
    raise worded(ConfigError, removed + "checkpoint=", removed + "--checkpoint")


def _complete(path):
    """Whether a checkpoint's index and data files are there."""
    return tf.io.gfile.exists(path + ".index") and bool(tf.io.gfile.glob(path + ".data-*"))


# The default inference of a run's network: one pass up to what it takes within the memory bound.
NETWORK_OPTIONS = inference.InferenceOptions(max_pass_pixels=inference.FROM_NETWORK)


class RunModel:
    """The network of a training run's folder, through `inference.Segmenter`."""

    def __init__(self, workdir, network=None, checkpoint=None, options=NETWORK_OPTIONS):
        self.workdir = workdir
        self.info = run_info.load(workdir)
        options = options.resolved(self.info.arch, self.info.num_classes)
        self.which = network or self.info.evaluated_network
        self.network, self.checkpoint, self.step = load_network(workdir, self.info, self.which,
                                                                checkpoint)
        self.options = options
        self.segmenter = inference.Segmenter(self.network, self.info.rgb_mean, self.info.rgb_std,
                                             self.info.input_multiple, options,
                                             fill_holes=self.info.fill_holes,
                                             dtype=self.info.pixels.dtype)
        self.flags_path = os.path.join(workdir, run_info.FLAGS_FILE)
        self.description = (f"the {self.which} of {workdir} at step {self.step} "
                            f"({options.describe()})")

    def predict(self, images):
        return {k: v.numpy() for k, v in self.segmenter.predict(images).items()}

    def label_maps(self, images, max_probability=True):
        """{'labels', 'max_probability'} of images (numpy; the second if asked), without the whole
        class probabilities of an image predicted in tiles."""
        maps = self.segmenter.predict_label_maps(images, max_probability)
        return {k: v.numpy() for k, v in maps.items()}


class SavedModel:
    """An exported SavedModel (python -m semiseg_tf.export), through its serving signature."""

    def __init__(self, path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise about(ConfigError, "saved_model", path, "not a SavedModel folder (no "
                        "saved_model.pb); give the VERSION folder, e.g. saved_models/NAME/1")
        self.path = path
        assets = os.path.join(path, "assets")
        # Only what describes the model is read from the export, and checked: its files may come
        # from anyone. (Its graph is a program: see docs/using.md, "Trusting an export".)
        for name in (run_info.RUN_INFO_FILE, EXPORT_INFO_FILE):
            where = os.path.join(assets, name)
            try:
                contents = _read_json(where)
                if name == run_info.RUN_INFO_FILE:
                    self.info = run_info.RunInfo.from_json(contents)
                else:
                    self.options, self.step = _export_options(contents)
                    export_info = contents
            except (OSError, ValueError) as error:
                raise about(ConfigError, "saved_model", path, f"{where}: not as semiseg_tf "
                            f"exports it ({str(error)[:200]})") from None
        try:
            self.loaded = tf.saved_model.load(path)
            self.serve = self.loaded.signatures["serving_default"]
        except (tf.errors.OpError, KeyError, ValueError, OSError) as error:
            raise about(ConfigError, "saved_model", path, "cannot be loaded as a SavedModel "
                        f"with a serving_default signature ({first_line(error)})") from None
        images = self.serve.structured_input_signature[1].get("images")
        pixels = self.info.pixels
        if images is None or images.shape[-1] != pixels.bands or images.dtype.name != pixels.dtype:
            takes = "no 'images'" if images is None else f"{images.dtype.name} {images.shape}"
            raise about(ConfigError, "saved_model", path, f"its serving signature takes {takes} "
                        f"images, its run.json says images of {pixels}")
        classes = self.serve.structured_outputs.get("probabilities")
        classes = None if classes is None else classes.shape[-1]
        if classes != self.info.num_classes:
            raise about(ConfigError, "saved_model", path, f"its network has {classes} outputs, "
                        f"its run.json {self.info.num_classes} classes")
        self.description = (f"the SavedModel {path} (the {str(export_info.get('network'))[:40]} "
                            f"of {str(export_info.get('workdir'))[:200]} at step {self.step}; "
                            f"{self.options.describe()})")

    def predict(self, images):
        """The signature's outputs for images [N, H, W, B], in as many calls as its one pass
        takes (`InferenceOptions.one_pass_pixels`); DataError for an image over it alone."""
        dtype = self.info.pixels.dtype
        try:
            return inference.in_passes(
                lambda chunk: self.serve(images=tf.convert_to_tensor(chunk, dtype)), images,
                self.options)
        except ValueError as error:
            over = f"{error}, which {self.path}'s serving_default takes (its "
            raise worded(DataError, over + "max_pass_pixels); open the run's folder (workdir=) "
                         "instead, which goes by tiles, or send the file to the encoded "
                         "signature", over +
                         "--max_pass_pixels); predict with --workdir, which goes by tiles, or "
                         "send the file to the encoded signature") from None

    def label_maps(self, images, max_probability=True):
        """As RunModel.label_maps, from the signature's outputs (which hold the probabilities)."""
        outputs = self.predict(images)
        maps = {"labels": outputs["labels"]}
        if max_probability:
            maps["max_probability"] = outputs["probabilities"].max(-1)
        return maps


def _export_options(export_info):
    """(InferenceOptions, step) of an export.json; ValueError naming a wrong value."""
    try:
        options = export_info["options"]
        flip, scales = options["flip"], tuple(float(v) for v in options["scales"])
        tile_size = tuple(int(v) for v in options["tile_size"]) if options["tile_size"] else None
        overlap, step = float(options["tile_overlap"]), export_info.get("step")
        # Exports written before the automatic tiles had none.
        max_pass = options.get("max_pass_pixels")
        max_pass = None if max_pass is None else int(max_pass)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"options: missing or malformed ({error})") from None
    if not (isinstance(flip, bool) and scales and min(scales) > 0 and 0 <= overlap < 1
            and (tile_size is None or (len(tile_size) == 2 and min(tile_size) > 0))
            and (max_pass is None or max_pass > 0)
            and (step is None or isinstance(step, int))):
        raise ValueError(f"options={str(options)[:120]}, step={step}: out of range")
    return inference.InferenceOptions(flip=flip, scales=scales, tile_size=tile_size,
                                      tile_overlap=overlap, max_pass_pixels=max_pass), step


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def open_model(workdir=None, saved_model=None, network=None, checkpoint=None,
               options=NETWORK_OPTIONS, options_given=False):
    """The model at `workdir` (a training run, with its `network`, `checkpoint` and the inference
    `options`) or `saved_model` (an export), as the commands open it. ConfigError (one line,
    naming the argument; `errors.report` names the flag) for a wrong one or a wrong combination."""
    if bool(workdir) == bool(saved_model):
        raise worded(ConfigError, "give either workdir (a training run) or saved_model (an export)",
                     "give either --workdir (a training run) or --saved_model (an export)")
    if saved_model:
        if network or checkpoint:
            raise worded(ConfigError, "network and checkpoint choose from a workdir; a saved_model "
                         "holds one network", "--network and --checkpoint choose from a --workdir; "
                         "a --saved_model holds one network")
        if options_given:
            raise worded(ConfigError, "the inference options are baked into a saved_model at "
                         "export; export again to change them", "--flip, --scales, --tile_size, "
                         "--tile_overlap and --max_pass_pixels are baked into a --saved_model at "
                         "export; export again to change them")
        return SavedModel(os.path.abspath(os.path.expanduser(saved_model)))
    workdir = os.path.abspath(os.path.expanduser(workdir))
    if not os.path.isdir(workdir):
        raise about(ConfigError, "workdir", workdir, "no such folder")
    return RunModel(workdir, network, checkpoint, options)
