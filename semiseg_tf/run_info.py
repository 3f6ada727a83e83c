"""What a later command needs to use a trained run, kept in its workdir as `run.json`.

The trainer writes it once the flags and the data have been checked: the classes and their colours,
the input normalisation, the network and its input multiple, the dataset. evaluate, predict and
export read it, and the export copies it into the SavedModel's assets, so none of them has to
re-derive these from code. A run trained before run.json existed gets it recomputed from its
flags.txt (and its prepared data's manifest, for the class names of file-based datasets).
"""
import dataclasses
import json
import os

from semiseg_tf import config as config_lib
from semiseg_tf import errors, models, visualise
from semiseg_tf.data import base, layouts, native, prepared, records, synthetic
from semiseg_tf.data.native import DataError
from semiseg_tf.files import atomic_write_bytes
from semiseg_tf.run_files import FLAGS_FILE, RUN_INFO_FILE  # noqa: F401 (used from here)

FORMAT = "semiseg_tf run info, version 1"
MAX_BANDS = 256


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """A run's classes, colours, input normalisation and network.

    palette: (r, g, b) per class. pixels: the images' bands and pixel type (`native.Pixels`).
    rgb_mean, rgb_std: one value per band; the network's input is (pixel / pixel maximum - rgb_mean)
    / rgb_std. network_options: the build options of `models.build`.
    evaluated_network: 'teacher' (mean teacher) or 'student' (Pi model, its own teacher).
    fill_holes: two-class runs whose predicted foreground gets its holes filled (--bin_fill_holes).
    mask_values: the raw mask values of classes 0, 1, ... (--mask_values), or () for class ids.
    precision: what the network computed in while it trained ('float32', 'bfloat16', 'float16';
      --mixed_precision, 'auto' resolved); its weights are float32 whatever it was.
    """
    dataset: str
    class_names: tuple
    palette: tuple
    rgb_mean: tuple
    rgb_std: tuple
    arch: str
    input_multiple: int
    crop_size: tuple
    network_options: dict
    evaluated_network: str = "teacher"
    fill_holes: bool = False
    mask_values: tuple = ()
    pixels: native.Pixels = native.PHOTO
    precision: str = "float32"

    @property
    def num_classes(self):
        return len(self.class_names)

    def to_json(self):
        return {
            "format": FORMAT, "dataset": self.dataset, "num_classes": self.num_classes,
            "class_names": list(self.class_names), "palette": [list(c) for c in self.palette],
            "input": {"dtype": self.pixels.dtype, "bands": self.pixels.bands,
                      "channels": "RGB" if self.pixels.photo else "bands",
                      "value_range": [0, self.pixels.maximum],
                      "normalisation": f"(pixel / {self.pixels.maximum} - mean) / std",
                      "mean": list(self.rgb_mean), "std": list(self.rgb_std)},
            "network": {"arch": self.arch, "input_multiple": self.input_multiple,
                        "options": dict(self.network_options),
                        "evaluated": self.evaluated_network},
            "crop_size": list(self.crop_size), "fill_holes": self.fill_holes,
            "mask_values": list(self.mask_values), "training": {"precision": self.precision},
        }

    @classmethod
    def from_json(cls, data):
        """The RunInfo of a run.json's contents, every value checked: the file may come from
        someone else's export. ValueError naming the first wrong field."""
        try:
            info = cls(dataset=data["dataset"], class_names=tuple(data["class_names"]),
                       palette=tuple(tuple(c) for c in data["palette"]),
                       rgb_mean=tuple(data["input"]["mean"]), rgb_std=tuple(data["input"]["std"]),
                       arch=data["network"]["arch"],
                       input_multiple=data["network"]["input_multiple"],
                       crop_size=tuple(data["crop_size"]),
                       network_options=dict(data["network"]["options"]),
                       evaluated_network=data["network"]["evaluated"],
                       fill_holes=data["fill_holes"], mask_values=tuple(data.get("mask_values", ())),
                       pixels=native.Pixels(data["input"].get("bands", 3),
                                            data["input"].get("dtype", "uint8")),
                       precision=data.get("training", {}).get("precision", "float32"))
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"missing or malformed field ({error.__class__.__name__}: "
                             f"{error})") from None
        info.check()
        return info

    def check(self):
        """ValueError (naming the field) unless every value is of its kind and range."""
        def require(condition, field, value, message):
            if not condition:
                raise ValueError(f"{field}={str(value)[:80]}: {message}")

        def ints(values, low, high):
            return all(isinstance(v, int) and not isinstance(v, bool) and low <= v <= high
                       for v in values)

        def numbers(values):
            return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)

        require(isinstance(self.dataset, str), "dataset", self.dataset, "not a name")
        require(2 <= self.num_classes <= 255 and all(isinstance(n, str) for n in self.class_names),
                "class_names", self.class_names, "2 to 255 names expected")
        require(len(self.palette) >= self.num_classes
                and all(len(c) == 3 and ints(c, 0, 255) for c in self.palette),
                "palette", self.palette, "one (r, g, b) of 0-255 per class expected")
        bands = self.pixels.bands
        require(ints([bands], 1, MAX_BANDS), "input.bands", bands,
                f"an integer of 1 to {MAX_BANDS} expected")
        require(self.pixels.dtype in ("uint8", "uint16"), "input.dtype", self.pixels.dtype,
                "uint8 or uint16 expected")
        require(len(self.rgb_mean) == bands and numbers(self.rgb_mean), "input.mean", self.rgb_mean,
                f"{bands} numbers expected (one per band)")
        require(len(self.rgb_std) == bands and numbers(self.rgb_std) and min(self.rgb_std) > 0,
                "input.std", self.rgb_std, f"{bands} positive numbers expected (one per band)")
        require(self.arch in models.available(), "network.arch", self.arch,
                "not a network of this version of semiseg_tf")
        require(ints([self.input_multiple], 1, 1024), "network.input_multiple",
                self.input_multiple, "an integer of 1 to 1024 expected")
        require(len(self.crop_size) == 2 and ints(self.crop_size, 1, 2 ** 16), "crop_size",
                self.crop_size, "two positive integers expected")
        require(self.evaluated_network in ("teacher", "student"), "network.evaluated",
                self.evaluated_network, "teacher or student expected")
        require(isinstance(self.fill_holes, bool), "fill_holes", self.fill_holes,
                "true or false expected")
        require(ints(self.mask_values, 0, 255), "mask_values", self.mask_values,
                "values of 0-255 expected")
        require(self.precision in ("float32", "bfloat16", "float16"), "training.precision",
                self.precision, "float32, bfloat16 or float16 expected")


def network_options(values):
    """The `models.build` options of a run's flags (a Config or {flag name: value})."""
    values = values if isinstance(values, dict) else values.by_flag()
    return {"freeze_bn": bool(values.get("freeze_bn")),
            "deeplab2_aspp_two_branches": bool(values.get("deeplab2_aspp_two_branches"))}


def from_run(cfg, source):
    """The RunInfo of a training run: its Config and its DataSource."""
    return RunInfo(dataset=cfg.data.dataset, class_names=tuple(source.class_names),
                   palette=source.palette, rgb_mean=tuple(source.rgb_mean),
                   rgb_std=tuple(source.rgb_std), arch=cfg.network.arch,
                   input_multiple=models.input_multiple(cfg.network.arch),
                   crop_size=tuple(cfg.augmentation.crop_size),
                   network_options=network_options(cfg),
                   evaluated_network="student" if cfg.method.model == "pi" else "teacher",
                   fill_holes=cfg.evaluation.bin_fill_holes, mask_values=tuple(cfg.data.mask_values),
                   pixels=source.pixels, precision=cfg.distribution.mixed_precision)


def write(workdir, info):
    atomic_write_bytes(os.path.join(workdir, RUN_INFO_FILE),
                       json.dumps(info.to_json(), indent=2).encode())


def load(workdir):
    """The RunInfo of the run in `workdir`: its run.json, or, for a run from before run.json, one
    recomputed from its flags.txt. ConfigError (one line) when neither can be read."""
    path = os.path.join(workdir, RUN_INFO_FILE)
    if os.path.isfile(path):
        try:
            with open(path) as f:
                return RunInfo.from_json(json.load(f))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise config_lib.ConfigError(f"{path}: not a readable run.json ({error})") from None
    return recompute(workdir)


def recompute(workdir):
    """The RunInfo of a run from its flags.txt: what run.json would hold."""
    path = os.path.join(workdir, FLAGS_FILE)
    if not os.path.isfile(path):
        raise errors.about(config_lib.ConfigError, "workdir", workdir, f"no {RUN_INFO_FILE} or "
                           f"{FLAGS_FILE} there; is it a training run's folder?")
    flag_values = config_lib.read_run_flags(path)
    values = {name: flag_values[name].value for name in flag_values}
    dataset, arch = values["dataset"], values["arch"]
    if arch not in models.available():
        raise config_lib.ConfigError(f"{path}: --arch={arch} is not a network of this version")
    class_names = _class_names(values, path)
    return RunInfo(dataset=dataset, class_names=class_names,
                   palette=(layouts.dataset_palette(dataset, values["data_dir"])
                            or visualise.default_palette(len(class_names))),
                   rgb_mean=base.IMAGENET_MEAN, rgb_std=base.IMAGENET_STD, arch=arch,
                   input_multiple=models.input_multiple(arch),
                   crop_size=tuple(int(v) for v in values["crop_size"].split(",")),
                   network_options=network_options(values),
                   evaluated_network="student" if values["model"] == "pi" else "teacher",
                   fill_holes=bool(values["bin_fill_holes"]),
                   mask_values=config_lib.parse_mask_values(values.get("mask_values") or ""),
                   # What 'auto' chose is not in the flags; such runs write run.json anyway.
                   precision={"bfloat16": "bfloat16", "float16": "float16"}.get(
                       values.get("mixed_precision"), "float32"))


def _class_names(values, flags_path):
    """A run's class names: the synthetic dataset's, else its prepared data's manifest, else the
    dataset's own list."""
    dataset = values["dataset"]
    if dataset == "synthetic":
        return synthetic.CLASS_NAMES
    data_dir = values["data_dir"]
    prepared_dir = values["prepared_dir"] or prepared.default_prepared_dir(dataset, data_dir)
    manifest = records.read_manifest(prepared_dir)
    if manifest:
        return tuple(manifest["class_names"])
    try:
        names = layouts.LAYOUTS[dataset](data_dir, num_classes=values["num_classes"]).class_names
    except DataError:
        names = None
    if not names:
        raise config_lib.ConfigError(
            f"{flags_path}: the run has no {RUN_INFO_FILE} and its classes cannot be recomputed "
            f"(no prepared data in {prepared_dir}, and the classes of {data_dir} come from its "
            "masks): run `python -m semiseg_tf.prepare` with the run's data flags first")
    return tuple(names)
