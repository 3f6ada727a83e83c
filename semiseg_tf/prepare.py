"""Prepare a dataset once: read it from its downloaded layout into sharded TFRecords with a manifest.

  python -m semiseg_tf.prepare --dataset=cityscapes --data_dir=/data/cityscapes \
      --prepared_dir=/data/prepared/cityscapes

Training does this by itself on first use (same folders, same result); run it on its own to do the
work up front, e.g. once on a shared folder before a multi-machine job. Run again, it checks the
existing preparation (raw files unchanged, every shard's size and SHA-256 digest) and redoes it only
when that fails.
"""
import sys

from absl import app, flags

from semiseg_tf.data import layouts, prepared, records
from semiseg_tf.data.native import DataError

_DATASET = flags.DEFINE_enum("dataset", None, sorted(layouts.LAYOUTS), "Dataset layout of --data_dir.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "The dataset's folder as downloaded (see "
                                "`python -m semiseg_tf.train --help` and the README).")
_PREPARED_DIR = flags.DEFINE_string("prepared_dir", None, "Output folder. Default: the one training "
                                    "uses without --prepared_dir, ~/.cache/semiseg_tf/prepared/"
                                    "DATASET-HASH.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 0, "--dataset=folder: the number of classes when "
                                    "classes.txt and palette.txt do not say (0: from the masks).")
_WORKERS = flags.DEFINE_integer("workers", 0, "Converting threads (0: one per CPU core).")
_VERIFY = flags.DEFINE_boolean("verify", True, "Re-hash every shard of an existing preparation "
                               "(--noverify checks sizes only, as training does).")


def summary(manifest, prepared_dir):
    """A few lines: images per split, classes, where the records are."""
    lines = [f"{manifest['dataset']}: {len(manifest['class_names'])} classes "
             f"({', '.join(manifest['class_names'])})"]
    for name, split in manifest["splits"].items():
        size = sum(s["bytes"] for s in split["shards"])
        lines.append(f"  {name}: {len(split['names'])} images ({sum(split['labelled'])} labelled), "
                     f"{len(split['shards'])} shard(s), {size / 2 ** 20:.1f} MiB")
    lines.append(f"  records in {prepared_dir}")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _DATASET.value or not _DATA_DIR.value:
        print("error: --dataset and --data_dir are required", file=sys.stderr)
        return 2
    try:
        layout = layouts.LAYOUTS[_DATASET.value](_DATA_DIR.value, num_classes=_NUM_CLASSES.value)
        prepared_dir = _PREPARED_DIR.value or prepared.default_prepared_dir(_DATASET.value,
                                                                           _DATA_DIR.value)
        manifest = records.prepare(layout, prepared_dir, workers=_WORKERS.value or None,
                                   verify=_VERIFY.value)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary(manifest, prepared_dir))
    return 0


if __name__ == "__main__":
    app.run(main)
