"""Training flags, and their validation into one frozen, nested `Config`.

The flags are defined by topic in semiseg_tf/options/, each topic with its help texts and the
`Section` that holds its parsed values and checks them (`cfg.boxmask.prop_range` is
--mask_prop_range as a pair of floats, and so on). `Config` has one section per topic and checks
what joins two of them. A wrong value raises `ConfigError` with a one-line message naming the flag.
"""
import copy
import dataclasses

from absl import flags

from semiseg_tf import catalog
from semiseg_tf.errors import ConfigError
from semiseg_tf.options import (augmentation, boxmask, data, distribution, evaluation, ict, labelled,
                                limits, logs, method, network, optimiser, pseudo_labels, run,
                                strong_augmentation, supervised, synthetic, training, unimatch,
                                vat)
from semiseg_tf.options import inference as inference_flags

DATASETS = data.DATASETS
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


@dataclasses.dataclass(frozen=True)
class Config:
    """A training run's settings: one section per topic of flags, each checked when made; the
    checks that join two sections are here."""
    run: run.Run
    training: training.Training
    data: data.Data
    synthetic: synthetic.Synthetic
    labelled: labelled.Labelled
    augmentation: augmentation.Augmentation
    strong_augmentation: strong_augmentation.StrongAugmentation
    network: network.Network
    method: method.Method
    supervised: supervised.Supervised
    boxmask: boxmask.BoxMask
    ict: ict.Ict
    vat: vat.Vat
    pseudo_labels: pseudo_labels.PseudoLabels
    unimatch: unimatch.UniMatch
    optimiser: optimiser.Optimiser
    evaluation: evaluation.Evaluation
    inference: inference_flags.Inference
    limits: limits.Limits
    logs: logs.Logs
    distribution: distribution.Distribution

    def __post_init__(self):
        if self.data.dataset == "synthetic":
            self.labelled.require(self.labelled.n_sup <= self.synthetic.num_train, "n_sup",
                                  f"more than the {self.synthetic.num_train} training images "
                                  "(--synthetic_num_train)")
        arch = self.network.arch
        network = catalog.network(arch)
        self.augmentation.require(all(v % network.input_multiple == 0
                                      for v in self.augmentation.crop_size),
                                  "crop_size", f"--arch={arch} needs sizes that are multiples of "
                                  f"{network.input_multiple}")
        self.method.require(self.method.cons_weight == 0 or network.feature_split
                            or not catalog.needs_feature_split(self.method.perturbation, self),
                            "perturbation",
                            f"its feature perturbation needs a network with an encoder/decoder split, "
                            f"which --arch={arch} has not (these have one: "
                            f"{', '.join(catalog.split_network_names())})")
        self.optimiser.require(not self.optimiser.deeplab2_authors_repeated_updates
                               or network.family == "deeplab2", "deeplab2_authors_repeated_updates",
                               f"only DeepLab v2 (deeplab2_*) listed its backbone parameters "
                               f"repeatedly, not --arch={arch}")

    def by_flag(self):
        """{flag name: parsed value} of every section, e.g. {"mask_prop_range": (0.5, 0.5), ...}."""
        return {name: getattr(section, field)
                for section in (getattr(self, f.name) for f in dataclasses.fields(self))
                for field, name in section.TOPIC.fields.items()}


SECTIONS = {field.name: field.type for field in dataclasses.fields(Config)}
# What `python -m semiseg_tf.train --help` shows, in this order; every flag of these is in a section.
TRAINING_TOPICS = tuple(section.TOPIC for section in SECTIONS.values())
FLAG_NAMES = tuple(name for topic in TRAINING_TOPICS for name in topic.names)


def from_flags(flag_values=flags.FLAGS):
    """The parsed flags as a `Config`; raises `ConfigError` naming the first bad flag."""
    return Config(**{name: section.from_flags(flag_values) for name, section in SECTIONS.items()})


def check_max_image_pixels(value):
    """For the commands other than train: ConfigError unless --max_image_pixels is valid."""
    limits.Limits(max_image_pixels=value)


def network_limit(flag_values, name, info):
    """--NAME (max_image_pixels or max_request_pixels) as given, else the default that keeps the
    network of run `info` (a RunInfo) within the memory bound (options/limits.network_budget)."""
    if flag_values[name].present:
        return flag_values[name].value
    return getattr(limits.network_budget(info.arch, info.num_classes), name)


def parse_mask_values(text):
    """--mask_values's text as the pixel values of the classes (() for none); ConfigError if bad."""
    return data.parse_mask_values("mask_values", text)


def inference_options(source):
    """The `inference.InferenceOptions` of a Config, or of the parsed inference flags
    (`source`: a Config or an absl FlagValues); ConfigError names a bad flag."""
    if isinstance(source, flags.FlagValues):
        return inference_flags.Inference.from_flags(source).options()
    return source.inference.options()


def read_run_flags(path=None):
    """The training flags of a run's flagfile (`flags.txt`), parsed into a FlagValues of their own,
    so the command reading them keeps its own; flags the project no longer has are ignored. Without
    a path: the training flags at their defaults."""
    values = flags.FlagValues()
    for name in FLAG_NAMES:
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
    for name in FLAG_NAMES:
        flag = flag_values[name]
        if flag.value is None:
            continue
        lines.append(flag.serialize())
    return "\n".join(lines) + "\n"
