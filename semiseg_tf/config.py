"""Training flags, and their validation into one frozen `Config`.

The flags are defined by topic in semiseg_tf/options/ (each with its help text); a training run takes
the topics in `TRAINING_TOPICS`. `from_flags()` checks each value and returns a frozen dataclass whose
fields are the flag names (parsed: `crop_size` is a tuple of ints, and so on). A wrong value raises
`ConfigError` with a one-line message that names the flag.
"""
import copy
import dataclasses
import os

from absl import flags

from semiseg_tf import lazy
from semiseg_tf.errors import ConfigError
from semiseg_tf.options import (augmentation, data, distribution, evaluation, labelled, limits, logs,
                                network, optimiser, perturbation, run, synthetic, training)
from semiseg_tf.options import inference as inference_flags

# Loaded on first use: the commands import this module to print --help.
inference = lazy.module("semiseg_tf.inference")
models = lazy.module("semiseg_tf.models")
perturbations = lazy.module("semiseg_tf.semisup.perturbations")


DATASETS = data.DATASETS
# What `python -m semiseg_tf.train --help` shows, in this order; every flag of these is a Config field.
TRAINING_TOPICS = tuple(m.TOPIC for m in (run, training, data, synthetic, labelled, augmentation,
                                          network, perturbation, optimiser, evaluation,
                                          inference_flags, limits, logs, distribution))
_NAMES = [name for topic in TRAINING_TOPICS for name in topic.names]
# Flags a resumed run may give other values, because they do not change what it trains, by why:
RESUMABLE_CHANGES = {
    # what is logged, evaluated and saved, and when the run pauses;
    **dict.fromkeys(["log_every", "image_every", "checkpoint_every", "keep_checkpoints",
                     "eval_every", "eval_batch_size", "stop_at_step", "on_nonfinite"]
                    + inference_flags.TOPIC.names, "what is reported"),
    # where things are (the same data, read from elsewhere);
    **dict.fromkeys(["data_dir", "prepared_dir", "prepare_workers"], "where the data are"),
    # a limit that refuses input, not one that changes it;
    "max_image_pixels": "a limit on the input",
    # how the work is laid out on devices (the update is the same on one device as on several).
    **dict.fromkeys(["strategy", "cluster", "cpu_devices"], "the device layout"),
    # and how the step is compiled (the same computation; --mixed_precision is another one).
    "jit_compile": "how the step is compiled",
}
# Schedules whose learning rate at a step depends on --train_steps: a longer run would already have
# had other rates, so --train_steps cannot grow on resume with them.
LENGTH_DEPENDENT_SCHEDULES = ("poly", "cosine")


def _parse_ints(name, text, count):
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--{name}={text!r}: expected {count} comma-separated integers") from None
    if len(values) != count or min(values) <= 0:
        raise ConfigError(f"--{name}={text!r}: expected {count} positive comma-separated integers")
    return values


def parse_mask_values(text):
    """--mask_values: () for none, else the distinct pixel values 0-255 of the classes, in order."""
    if not text:
        return ()
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--mask_values={text!r}: expected comma-separated pixel values, e.g. "
                          "0,255") from None
    if len(values) < 2 or len(set(values)) != len(values) or not all(0 <= v <= 255 for v in values):
        raise ConfigError(f"--mask_values={text!r}: expected two or more distinct pixel values "
                          "0-255, one per class in class order, e.g. 0,255")
    return values


def _parse_prop_range(text):
    try:
        parts = tuple(float(v) for v in text.split(":"))
    except ValueError:
        raise ConfigError(f"--mask_prop_range={text!r}: expected 'p' or 'a:b' with numbers") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not 0 <= parts[0] <= parts[1] <= 1:
        raise ConfigError(f"--mask_prop_range={text!r}: expected 0 <= a <= b <= 1")
    return parts


def _parse_range(name, text, low, high):
    """'a:b' -> (a, b) with low < a <= b (<= high when given); ConfigError names the flag."""
    try:
        parts = tuple(float(v) for v in text.split(":"))
    except ValueError:
        parts = ()
    if len(parts) != 2 or not low < parts[0] <= parts[1] or (high is not None and parts[1] > high):
        bound = f" <= {high}" if high is not None else ""
        raise ConfigError(f"--{name}={text!r}: expected 'a:b' with {low} < a <= b{bound}")
    return parts


def _parse_weights(text):
    try:
        weights = tuple(float(v) for v in text.split(","))
    except ValueError:
        weights = ()
    if len(weights) != 3 or min(weights) < 0:
        raise ConfigError(f"--unimatch_weights={text!r}: expected 3 comma-separated weights >= 0 "
                          "(strong view 1, strong view 2, feature stream)")
    return weights


def _require(condition, name, value, message):
    if not condition:
        raise ConfigError(f"--{name}={value}: {message}")


Config = dataclasses.make_dataclass("Config", _NAMES, frozen=True)
Config.__doc__ = "All training flags, validated and parsed; fields are the flag names."


def from_flags(flag_values=flags.FLAGS):
    """Validates the parsed flags into a `Config`; raises `ConfigError` naming the first bad flag."""
    values = {name: flag_values[name].value for name in _NAMES}
    _require(values["workdir"], "workdir", values["workdir"], "a run folder is required")
    values["workdir"] = os.path.abspath(os.path.expanduser(values["workdir"]))
    _require(not os.path.isfile(values["workdir"]), "workdir", values["workdir"],
             "is a file, not a folder")
    for name in ("synthetic_num_train", "synthetic_num_val", "synthetic_image_size", "train_steps",
                 "batch_size", "eval_every", "eval_batch_size", "log_every", "checkpoint_every",
                 "keep_checkpoints", "boxmask_n_boxes", "cpu_devices", "unsup_batch_ratio"):
        _require(values[name] > 0, name, values[name], "must be positive")
    _require(values["image_every"] >= 0, "image_every", values["image_every"], "must be >= 0")
    _require(values["stop_at_step"] >= 0, "stop_at_step", values["stop_at_step"], "must be >= 0")
    _require(values["n_sup"] == -1 or values["n_sup"] > 0, "n_sup", values["n_sup"],
             "must be positive, or -1 for all")
    if values["dataset"] == "synthetic":
        _require(values["n_sup"] <= values["synthetic_num_train"], "n_sup", values["n_sup"],
                 f"more than the {values['synthetic_num_train']} training images "
                 "(--synthetic_num_train)")
    else:
        _require(values["data_dir"], "data_dir", "", f"--dataset={values['dataset']} reads its "
                 "files from --data_dir, the dataset's folder")
        for name in ("data_dir", "prepared_dir", "split_file"):
            if values[name]:
                values[name] = os.path.abspath(os.path.expanduser(values[name]))
        _require(os.path.isdir(values["data_dir"]), "data_dir", values["data_dir"], "no such folder")
        _require(not values["split_file"] or os.path.isfile(values["split_file"]), "split_file",
                 values["split_file"], "no such file")
    for name in ("n_val", "num_classes", "prepare_workers"):
        _require(values[name] >= 0, name, values[name], "must be >= 0")
    values["crop_size"] = _parse_ints("crop_size", values["crop_size"], 2)
    values["mask_values"] = parse_mask_values(values["mask_values"])
    _require(not values["mask_values"] or values["dataset"] == "folder", "mask_values",
             ",".join(map(str, values["mask_values"])), "only for --dataset=folder (the other "
             "datasets' masks are read in their own format)")
    values["mask_prop_range"] = _parse_prop_range(values["mask_prop_range"])
    _require(values["arch"] in models.available(), "arch", values["arch"],
             f"unknown network; choose one of {', '.join(models.available())}")
    multiple = models.input_multiple(values["arch"])
    _require(all(v % multiple == 0 for v in values["crop_size"]), "crop_size",
             ",".join(map(str, values["crop_size"])),
             f"--arch={values['arch']} needs sizes that are multiples of {multiple}")
    if values["dataset"] == "synthetic":
        _require(values["synthetic_image_size"] % multiple == 0, "synthetic_image_size",
                 values["synthetic_image_size"],
                 f"--arch={values['arch']} evaluates full images: needs a multiple of {multiple}")
    _require(values["perturbation"] in perturbations.available(), "perturbation",
             values["perturbation"], f"choose one of {', '.join(perturbations.available())}")
    _require(values["cons_weight"] >= 0, "cons_weight", values["cons_weight"], "must be >= 0")
    _require(values["perturbation"] != "unimatch" or values["cons_weight"] == 0
             or models.has_feature_split(values["arch"]), "perturbation", "unimatch",
             f"its feature stream needs a network with an encoder/decoder split, which "
             f"--arch={values['arch']} has not (these have one: "
             f"{', '.join(n for n in models.available() if models.has_feature_split(n))})")
    _require(0 <= values["pseudo_label_box_prob"] <= 1, "pseudo_label_box_prob",
             values["pseudo_label_box_prob"], "must lie in [0, 1]")
    values["pseudo_label_box_area"] = _parse_range("pseudo_label_box_area",
                                                   values["pseudo_label_box_area"], 0, 1)
    values["pseudo_label_box_ratio"] = _parse_range("pseudo_label_box_ratio",
                                                    values["pseudo_label_box_ratio"], 0, None)
    _require(0 <= values["unimatch_dropout"] < 1, "unimatch_dropout", values["unimatch_dropout"],
             "must lie in [0, 1)")
    values["unimatch_weights"] = _parse_weights(values["unimatch_weights"])
    _require(values["sup_weight"] >= 0, "sup_weight", values["sup_weight"], "must be >= 0")
    _require(values["cons_average"] != "confident" or (values["conf_per_pixel"]
                                                       and values["conf_thresh"] > 0),
             "cons_average", "confident", "averages over confident pixels: needs --conf_per_pixel "
             "and --conf_thresh above 0")
    _require(0 <= values["conf_thresh"] <= 1, "conf_thresh", values["conf_thresh"],
             "must lie in [0, 1]")
    _require(0 <= values["teacher_alpha"] <= 1, "teacher_alpha", values["teacher_alpha"],
             "must lie in [0, 1]")
    _require(values["aug_max_scale"] >= 1, "aug_max_scale", values["aug_max_scale"],
             "must be >= 1 (scales are drawn from [1/s, s])")
    _require(values["aug_rot_mag"] >= 0, "aug_rot_mag", values["aug_rot_mag"], "must be >= 0")
    _require(values["aug_offset_range"] >= 0, "aug_offset_range", values["aug_offset_range"],
             "must be >= 0")
    _require(not values["aug_hvflip"] or values["crop_size"][0] == values["crop_size"][1],
             "aug_hvflip", "true", "diagonal flips need a square --crop_size")
    _require(values["rampup"] >= 0, "rampup", values["rampup"], "must be >= 0")
    _require(values["ict_alpha"] > 0, "ict_alpha", values["ict_alpha"], "must be positive")
    _require(values["vat_probe_scale"] > 0, "vat_probe_scale", values["vat_probe_scale"],
             "must be positive")
    _require(values["vat_radius"] >= 0, "vat_radius", values["vat_radius"], "must be >= 0")
    for name in ("aug_colour_brightness", "aug_colour_contrast", "aug_colour_saturation"):
        _require(values[name] >= 0, name, values[name], "must be >= 0")
    _require(0 <= values["aug_colour_hue"] <= 0.5, "aug_colour_hue", values["aug_colour_hue"],
             "must lie in [0, 0.5]")
    for name in ("aug_colour_prob", "aug_colour_greyscale_prob", "aug_strong_blur"):
        _require(0 <= values[name] <= 1, name, values[name], "must lie in [0, 1]")
    _require(values["learning_rate"] > 0, "learning_rate", values["learning_rate"], "must be positive")
    _require(values["backbone_lr_scale"] >= 0, "backbone_lr_scale", values["backbone_lr_scale"],
             "must be >= 0")
    _require(not values["deeplab2_authors_repeated_updates"] or values["arch"].startswith("deeplab2"),
             "deeplab2_authors_repeated_updates", "true", f"only DeepLab v2 (deeplab2_*) listed its "
             f"backbone parameters repeatedly, not --arch={values['arch']}")
    if values["backbone_weights"]:
        values["backbone_weights"] = os.path.abspath(os.path.expanduser(values["backbone_weights"]))
        _require(os.path.isfile(values["backbone_weights"]), "backbone_weights",
                 values["backbone_weights"], "no such file")
    for name in ("sgd_momentum", "sgd_weight_decay", "lr_step_gamma", "lr_poly_power"):
        _require(values[name] >= 0, name, values[name], "must be >= 0")
    try:
        values["lr_step_boundaries"] = tuple(sorted(int(v) for v in values["lr_step_boundaries"]))
    except ValueError:
        raise ConfigError(f"--lr_step_boundaries={','.join(values['lr_step_boundaries'])}: expected "
                          "comma-separated step numbers") from None
    _require(values["lr_sched"] != "stepped" or values["lr_step_boundaries"], "lr_step_boundaries",
             "", "--lr_sched=stepped needs at least one boundary step")
    _check_inference_values(values)
    check_max_image_pixels(values["max_image_pixels"])
    return Config(**values)


def check_max_image_pixels(value):
    _require(value > 0, "max_image_pixels", value, "must be a positive number of pixels")


def _check_inference_values(values):
    """Validates and parses the inference flags in `values` ({name: raw flag value}) in place."""
    _require(values["eval_batch_size"] > 0, "eval_batch_size", values["eval_batch_size"],
             "must be positive")
    text = ",".join(map(str, values["scales"]))
    try:
        values["scales"] = tuple(float(v) for v in values["scales"])
    except ValueError:
        raise ConfigError(f"--scales={text}: expected comma-separated numbers") from None
    _require(values["scales"] and min(values["scales"]) > 0, "scales", text,
             "expected one or more positive numbers")
    values["tile_size"] = (_parse_ints("tile_size", values["tile_size"], 2) if values["tile_size"]
                           else None)
    _require(0 <= values["tile_overlap"] < 1, "tile_overlap", values["tile_overlap"],
             "must lie in [0, 1)")


def inference_options(source):
    """The `inference.InferenceOptions` of a Config, or of the parsed inference flags
    (`source`: a Config or an absl FlagValues); ConfigError names a bad flag."""
    if isinstance(source, flags.FlagValues):
        values = {name: source[name].value for name in inference_flags.TOPIC.names}
        _check_inference_values(values)
    else:
        values = dataclasses.asdict(source)
    return inference.InferenceOptions(flip=values["flip"], scales=values["scales"],
                                      tile_size=values["tile_size"],
                                      tile_overlap=values["tile_overlap"])


def read_run_flags(path=None):
    """The training flags of a run's flagfile (`flags.txt`), parsed into a FlagValues of their own,
    so the command reading them keeps its own; flags the project no longer has are ignored. Without
    a path: the training flags at their defaults."""
    values = flags.FlagValues()
    for name in _NAMES:
        flag = copy.deepcopy(flags.FLAGS[name])
        flag.unparse()
        values[name] = flag
    if path is None:
        return values
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not a readable flagfile ({error})") from None
    arguments = [line for line in lines if line and not line.startswith(("#", "//"))]
    for line in arguments:
        # The file is read as data: it may come from someone else's run or export, and a nested
        # flagfile would make it read any file on this machine.
        if not line.startswith("--") or line.split("=", 1)[0] == "--flagfile":
            raise ConfigError(f"{path}: not a run's flags file (line {line[:60]!r}: one --name=value "
                              "per line, no --flagfile)")
    try:
        values(["run", *arguments], known_only=True)
    except flags.Error as error:
        raise ConfigError(f"{path}: not a readable flagfile ({error})") from None
    return values


def default_flag_line(name, flag_values=flags.FLAGS):
    """The flagfile line of a flag at its default value (for run folders written before it existed)."""
    flag = flag_values[name]
    return flag._serialize(flag.default)  # absl's own serialiser, as `Flag.serialize` uses


def to_flagfile_text(flag_values=flags.FLAGS):
    """The training flags as a flagfile, one `--name=value` per line, exactly as given."""
    lines = []
    for name in _NAMES:
        flag = flag_values[name]
        if flag.value is None:
            continue
        lines.append(flag.serialize())
    return "\n".join(lines) + "\n"
