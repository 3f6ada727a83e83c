r"""Prepare a dataset once: read it from its downloaded layout into sharded TFRecords with a manifest.

  python -m semiseg_tf.prepare --dataset=cityscapes --data_dir=/data/cityscapes \
      --prepared_dir=/data/prepared/cityscapes

Training does this by itself on first use (same folders, same result); run it on its own to do the
work up front, e.g. once on a shared folder before a multi-machine job. Run again, it checks the
existing preparation (raw files unchanged, every shard's size and SHA-256 digest) and redoes it only
when that fails.
"""

from absl import app, flags

from semiseg_tf import config, options
from semiseg_tf.data import layouts, native
from semiseg_tf.errors import ConfigError
from semiseg_tf.options import data as data_flags
from semiseg_tf.options import limits as limits_flags
from semiseg_tf.options import strong_augmentation

# The modules that load TensorFlow are imported in the functions that use them, so that --help
# answers without loading it.

TOPIC = options.Topic("Preparation", __name__)
TOPIC.define("boolean", "verify", True, "Re-hash every shard of an existing preparation "
        "(--noverify checks sizes only, as training does).")
# The name this flag had before the data flags were shared with training (--prepare_workers).
flags.DEFINE_alias("workers", "prepare_workers")


def summary(manifest, prepared_dir):
    """A few lines: images per split, classes, where the records are."""
    lines = [f"{manifest['dataset']}: {len(manifest['class_names'])} classes "
             f"({', '.join(manifest['class_names'])})"]
    for name, split in manifest["splits"].items():
        size = sum(s["bytes"] for s in split["shards"])
        lines.append(f"  {name}: {len(split['names'])} images ({sum(split['labelled'])} labelled), "
                     f"{len(split['shards'])} shard(s), {size / 2 ** 20:.1f} MiB")
    colour = colour_line(manifest, prepared_dir)
    if colour:
        lines.append(f"  colour: {colour}")
    lines.append(f"  records in {prepared_dir}")
    return "\n".join(lines)


def colour_line(manifest, prepared_dir):
    """How much colour alone tells the classes apart on the labelled training images, and how much
    of it the published strong view of FixMatch, UniMatch and UniMatch V2 leaves (one line), or
    None for images that are not photos or a dataset without labelled training images."""
    from semiseg_tf.augment import colour_cue
    from semiseg_tf.data import records
    pixels = manifest.get("pixels") or {}
    train = records.PreparedSplit.from_manifest(prepared_dir, manifest["splits"]["train"])
    labelled = [i for i, has_label in enumerate(train.labelled) if has_label]
    if not native.Pixels(pixels.get("bands", 3), pixels.get("dtype", "uint8")).photo \
            or not labelled:
        return None
    reader = records.RecordReader(train)
    images, labels = colour_cue.labelled_images(
        lambda index: records.decode_example(reader.read_serialised(index)), labelled)
    result = colour_cue.check(images, labels, len(manifest["class_names"]),
                              colour_cue.PUBLISHED_VIEW)
    return colour_cue.report(result, "the published strong view of FixMatch, UniMatch and "
                                     "UniMatch V2", strong_augmentation.TOPIC.fields)


def main(argv):
    from semiseg_tf.data import prepared, records
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    values = flags.FLAGS
    if values.dataset not in layouts.LAYOUTS or not values.data_dir:
        raise ConfigError(f"--dataset ({', '.join(sorted(layouts.LAYOUTS))}) and --data_dir are "
                          "required; the synthetic dataset needs no preparation")
    config.check_max_image_pixels(values.max_image_pixels)
    native.set_max_image_pixels(values.max_image_pixels)
    layout = layouts.LAYOUTS[values.dataset](
        values.data_dir, num_classes=values.num_classes,
        mask_values=config.parse_mask_values(values.mask_values))
    for note in layout.notes:
        print(note)
    prepared_dir = values.prepared_dir or prepared.default_prepared_dir(values.dataset,
                                                                        values.data_dir)
    manifest = records.prepare(layout, prepared_dir, workers=values.prepare_workers or None,
                               verify=values.verify)
    print(summary(manifest, prepared_dir))
    return 0


COMMAND_TOPICS = (data_flags.TOPIC, TOPIC, limits_flags.TOPIC)

if __name__ == "__main__":
    options.run_command(main, COMMAND_TOPICS)
