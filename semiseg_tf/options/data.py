"""Flags that choose a dataset and where its files are (train, prepare, evaluate)."""
import dataclasses
import os

from semiseg_tf.errors import ConfigError
from semiseg_tf.options import Section, Topic, absolute_path

TOPIC = Topic("Data", __name__)
DATASETS = ("synthetic", "pascal_aug", "pascal", "cityscapes", "isic2017", "camvid", "folder")

TOPIC.define("enum", "dataset", "synthetic", list(DATASETS), "Data source: synthetic (embedded, "
        "generated from --synthetic_seed, no files); pascal_aug (VOC 2012 + SBD labels, 10,582 "
        "training images, the paper's); pascal (VOC 2012, 1,464); cityscapes; isic2017; camvid "
        "(SegNet layout); folder (your own images/ and masks/). The file-based ones read --data_dir"
        " and are prepared once into --prepared_dir (docs/data.md).")
TOPIC.define("string", "data_dir", None, "The dataset's folder as downloaded: pascal*: the VOC2012 "
        "folder (JPEGImages/, SegmentationClassAug/ or SegmentationClass/); cityscapes: "
        "leftImg8bit/ and gtFine/ or their zips; isic2017: the official training/validation folders"
        " or zips; camvid: train/, trainannot/, val/, ...; folder: images/, masks/ (docs/data.md).")
TOPIC.define("string", "prepared_dir", None, "Where the prepared records (sharded TFRecords and a "
        "manifest) are written once and read from. Default: ~/.cache/semiseg_tf/prepared/DATASET-"
        "HASH (HASH from --data_dir; $XDG_CACHE_HOME is honoured). Use a shared folder for multi-"
        "machine jobs.")
TOPIC.define("integer", "prepare_workers", 0, "Threads that decode and convert images while "
        "preparing (0: one per CPU core).")
TOPIC.define("integer", "n_val", 0, "Hold out this many labelled training images for validation "
        "(drawn with --val_seed; the official validation set is then evaluated once at the end, as "
        "a test set). 0: validate on the official validation set.")
TOPIC.define("integer", "val_seed", 131, "Seed of the --n_val hold-out draw.")
TOPIC.define("string", "mask_values", "", "--dataset=folder: the pixel values the masks use for "
        "the classes, in class order, when they are not the class ids: 0,255 for black-and-white "
        "masks (0 becomes class 0, 255 class 1). Any other value in a mask is then an error, except "
        "255 when it is not listed (ignore). Empty: the masks hold class ids 0..C-1 and 255 to "
        "ignore.")
TOPIC.define("integer", "num_classes", 0, "--dataset=folder: the number of classes, when neither "
        "classes.txt nor palette.txt says it (0: the largest id in the masks plus one).")


def parse_mask_values(name, text):
    """--mask_values: () for none, else the distinct pixel values 0-255 of the classes, in order."""
    if not text:
        return ()
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--{name}={text!r}: expected comma-separated pixel values, e.g. "
                          "0,255") from None
    if len(values) < 2 or len(set(values)) != len(values) or not all(0 <= v <= 255 for v in values):
        raise ConfigError(f"--{name}={text!r}: expected two or more distinct pixel values "
                          "0-255, one per class in class order, e.g. 0,255")
    return values


@dataclasses.dataclass(frozen=True)
class Data(Section):
    TOPIC = TOPIC
    PARSE = {"data_dir": absolute_path, "prepared_dir": absolute_path,
             "mask_values": parse_mask_values}
    dataset: str
    data_dir: str
    prepared_dir: str
    prepare_workers: int
    n_val: int
    val_seed: int
    mask_values: tuple
    num_classes: int

    def check(self):
        if self.dataset != "synthetic":
            self.require(self.data_dir, "data_dir", f"--dataset={self.dataset} reads its files from "
                         "--data_dir, the dataset's folder")
            self.require(os.path.isdir(self.data_dir), "data_dir", "no such folder")
        for field in ("n_val", "num_classes", "prepare_workers"):
            self.require(getattr(self, field) >= 0, field, "must be >= 0")
        self.require(not self.mask_values or self.dataset == "folder", "mask_values", "only for "
                     "--dataset=folder (the other datasets' masks are read in their own format)")
