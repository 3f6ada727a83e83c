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

# What an export adds to the SavedModel's assets/ besides the run's own files.
EXPORT_INFO_FILE = "export.json"


def latest_checkpoint(workdir):
    """The path of the run's latest checkpoint; ConfigError when it has none."""
    path = tf.train.latest_checkpoint(os.path.join(workdir, CHECKPOINTS_DIR))
    if path is None:
        raise ConfigError(f"--workdir={workdir}: no checkpoint in {workdir}/{CHECKPOINTS_DIR} "
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
    path = checkpoint or latest_checkpoint(workdir)
    if not tf.io.gfile.exists(path + ".index"):
        raise ConfigError(f"--checkpoint={path}: no such checkpoint (expected {path}.index)")
    network = models.build(info.arch, info.num_classes, **info.network_options)
    try:
        tf.train.Checkpoint(**{which: network}).restore(path).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise ConfigError(f"{path}: does not hold the {which} {info.arch} with {info.num_classes} "
                          f"classes that {workdir}/{run_info.RUN_INFO_FILE} describes "
                          f"({first_line(error)})") from None
    return network, path, checkpoint_step(path)


class RunModel:
    """The network of a training run's folder, through `inference.Segmenter`."""

    def __init__(self, workdir, network=None, checkpoint=None, options=inference.InferenceOptions()):
        self.workdir = workdir
        self.info = run_info.load(workdir)
        self.which = network or self.info.evaluated_network
        self.network, self.checkpoint, self.step = load_network(workdir, self.info, self.which,
                                                                checkpoint)
        self.options = options
        self.segmenter = inference.Segmenter(self.network, self.info.rgb_mean, self.info.rgb_std,
                                             self.info.input_multiple, options,
                                             fill_holes=self.info.fill_holes)
        self.flags_path = os.path.join(workdir, run_info.FLAGS_FILE)
        self.description = (f"the {self.which} of {workdir} at step {self.step} "
                            f"({options.describe()})")

    def predict(self, images):
        return {k: v.numpy() for k, v in self.segmenter.predict(images).items()}


class SavedModel:
    """An exported SavedModel (python -m semiseg_tf.export), through its serving signature."""

    def __init__(self, path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ConfigError(f"--saved_model={path}: not a SavedModel folder (no saved_model.pb); "
                              "give the VERSION folder, e.g. saved_models/NAME/1")
        self.path = path
        assets = os.path.join(path, "assets")
        try:
            self.info = run_info.RunInfo.from_json(_read_json(os.path.join(assets,
                                                                           run_info.RUN_INFO_FILE)))
            export_info = _read_json(os.path.join(assets, EXPORT_INFO_FILE))
        except (OSError, ValueError, KeyError) as error:
            raise ConfigError(f"--saved_model={path}: not exported by semiseg_tf ({error})") from None
        self.options = inference.InferenceOptions(
            flip=export_info["options"]["flip"], scales=tuple(export_info["options"]["scales"]),
            tile_size=(tuple(export_info["options"]["tile_size"])
                       if export_info["options"]["tile_size"] else None),
            tile_overlap=export_info["options"]["tile_overlap"])
        self.loaded = tf.saved_model.load(path)
        self.serve = self.loaded.signatures["serving_default"]
        self.flags_path = os.path.join(assets, run_info.FLAGS_FILE)
        self.step = export_info.get("step")
        self.description = (f"the SavedModel {path} (the {export_info['network']} of "
                            f"{export_info['workdir']} at step {self.step}; "
                            f"{self.options.describe()})")

    def predict(self, images):
        outputs = self.serve(images=tf.convert_to_tensor(images, tf.uint8))
        return {k: v.numpy() for k, v in outputs.items()}


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def open_model(workdir=None, saved_model=None, network=None, checkpoint=None,
               options=inference.InferenceOptions(), options_given=False):
    """The model a command was pointed at: `--workdir` (with --network, --checkpoint and the
    inference options) or `--saved_model`. ConfigError (one line) for a wrong combination."""
    if bool(workdir) == bool(saved_model):
        raise ConfigError("give either --workdir (a training run) or --saved_model (an export)")
    if saved_model:
        if network or checkpoint:
            raise ConfigError("--network and --checkpoint choose from a --workdir; a --saved_model "
                              "holds one network")
        if options_given:
            raise ConfigError("--flip, --scales, --tile_size and --tile_overlap are baked into a "
                              "--saved_model at export; export again to change them")
        return SavedModel(os.path.abspath(os.path.expanduser(saved_model)))
    workdir = os.path.abspath(os.path.expanduser(workdir))
    if not os.path.isdir(workdir):
        raise ConfigError(f"--workdir={workdir}: no such folder")
    return RunModel(workdir, network, checkpoint, options)
