"""Flags that choose a dataset and where its files are (train, prepare, evaluate)."""
from semiseg_tf.options import Topic

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
