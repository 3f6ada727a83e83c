"""Score a trained run (or an exported SavedModel) on full images: per-class IoU, F1 (Dice) and
accuracy, their means, overall (pixel) accuracy, the confusion matrix.

  python -m semiseg_tf.evaluate --workdir=runs/cutmix                  # the run's validation set
  python -m semiseg_tf.evaluate --workdir=runs/cutmix --split=test     # its test set
  python -m semiseg_tf.evaluate --workdir=runs/cutmix --flip --scales=0.5,0.75,1,1.25,1.5,1.75
  python -m semiseg_tf.evaluate --saved_model=saved_models/cutmix/1 --images=photos --masks=masks
  python -m semiseg_tf.evaluate --workdir=runs/city --dataset=cityscapes --data_dir=/data/city \\
      --tile_size=512,1024

Data: the run's own dataset (its flags, from the run folder or the export's assets), another one
(--dataset, --data_dir and the other data flags), or a folder of images and masks (--images,
--masks). Inference: the run's options unless given here (a SavedModel has its own, baked in).
Writes scores.json (every score, the confusion matrix, what was scored) and confusion.png (row-
normalised, class names on the axes) into --output_dir. A run's evaluate with its training flags
gives exactly the trainer's final mIoU: both run the same code (evaluation.score).
"""
import json
import os
import sys

from absl import app, flags, logging

from semiseg_tf import config, options, visualise
from semiseg_tf.data import native
from semiseg_tf.files import atomic_write_bytes, png_bytes
from semiseg_tf.options import data as data_flags
from semiseg_tf.options import inference as inference_flags
from semiseg_tf.options import limits as limits_flags
from semiseg_tf.options import model as model_flags
from semiseg_tf.options import run as run_flags
from semiseg_tf.options import synthetic as synthetic_flags
from semiseg_tf.progress import Progress

# The modules that load TensorFlow are imported in the functions that use them, so that --help
# answers without loading it.

TOPIC = options.Topic("What to score, and where to write", __name__)
TOPIC.define("enum", "split", "val", ["val", "test"], "The set of the dataset to score: its "
        "validation set (the one training validated on: with --n_val, the held-out images) or its "
        "test set (CamVid's; with --n_val, the official validation set).")
TOPIC.define("string", "images", None, "Score a folder of images instead (sub-folders allowed), "
        "with their masks in --masks under the same relative names.")
TOPIC.define("string", "masks", None, "With --images: the masks' folder (class ids 0..C-1, 255 "
        "ignored; colour masks in the run's palette).")
TOPIC.define("string", "output_dir", None, "Where scores.json and confusion.png go. Default: "
        "WORKDIR/evaluation/WHAT, or for a --saved_model NAME/VERSION, NAME/evaluation/VERSION-WHAT "
        "beside its versions (TF Serving loads numbered folders only); WHAT names the set and "
        "the inference options.")
TOPIC.define("enum", "absent_classes", "zero", ["zero", "skip"], "How a class absent from both "
        "the truth and the predictions of the whole set counts in the mean IoU and mean F1: zero "
        "(it scores 0, as the paper's authors and the trainer's evaluations) or skip (left out of "
        "the mean, as mmsegmentation). Such classes are named in scores.json either way.")

DATA_FLAGS = data_flags.TOPIC.names + synthetic_flags.TOPIC.names


def run_flag_values(flags_path, flag_values=flags.FLAGS):
    """The training flags of a run's `flags_path` (None: their defaults), with the data and
    inference flags given to this command put over them (a new --dataset starts its data flags from
    their defaults, not from the run's)."""
    if flags_path is not None and not os.path.isfile(flags_path):
        raise config.ConfigError(f"{flags_path}: missing (the run's training flags)")
    values = config.read_run_flags(flags_path)
    given = {name for name in DATA_FLAGS + inference_flags.TOPIC.names + limits_flags.TOPIC.names
             if flag_values[name].present}
    if "dataset" in given:
        for name in DATA_FLAGS:
            values[name].value = flag_values[name].default
    for name in given:
        values[name].value = flag_values[name].value
    # Which images are labelled, and where the pretrained weights were, play no part in scoring
    # (and the weights file may be gone from the machine that scores).
    values["n_sup"].value, values["split_file"].value = -1, None
    values["backbone_weights"].value = None
    return values


def _data(model, run_values, flag_values, out):
    """(DataSource, its pairs to score, a short name of the set)."""
    from semiseg_tf.data import image_files
    from semiseg_tf.training import builders
    info = model.info
    if flag_values.images or flag_values.masks:
        if not (flag_values.images and flag_values.masks):
            raise config.ConfigError("--images and --masks go together: the images and their masks")
        source = image_files.ImageMaskFolder(flag_values.images, flag_values.masks,
                                             info.class_names, info.palette, info.mask_values,
                                             info.pixels, info.rgb_mean, info.rgb_std)
        source.check()
        return source, source.validation(), "images-" + os.path.basename(
            os.path.normpath(flag_values.images))
    cfg = config.from_flags(run_values)
    source = builders.build_source(cfg, out=out)
    if source.num_classes != info.num_classes:
        raise config.ConfigError(f"--dataset={cfg.data.dataset}: has {source.num_classes} classes, the "
                                 f"model {info.num_classes}")
    if flag_values.split == "test":
        pairs = source.test()
        if pairs is None:
            raise config.ConfigError(f"--split=test: {cfg.data.dataset} has no test set here (CamVid has "
                                     "one; with --n_val the official validation set is the test set)")
    else:
        pairs = source.validation()
    return source, pairs, f"{cfg.data.dataset}-{flag_values.split}"


def _table(result, class_names):
    width = max(len("class"), *(len(n) for n in class_names))
    absent = set(result["absent_classes"]["classes"])
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'F1/Dice':>7}  {'accuracy':>8}",
             "-" * (width + 27)]
    for name in class_names:
        lines.append(f"{name:<{width}}  {100 * result['per_class_iou'][name]:>6.2f}  "
                     f"{100 * result['per_class_f1'][name]:>7.2f}  "
                     f"{100 * result['per_class_accuracy'][name]:>8.2f}"
                     + ("  (absent: in neither truth nor prediction)" if name in absent else ""))
    lines.append("-" * (width + 27))
    lines.append(f"mIoU {100 * result['miou']:.2f}%   mean F1 {100 * result['mean_f1']:.2f}%   "
                 f"overall accuracy {100 * result['pixel_accuracy']:.2f}%   mean class accuracy "
                 f"{100 * result['mean_class_accuracy']:.2f}%")
    if absent:
        lines.append(f"absent classes counted as {result['absent_classes']['counted_as']} in the "
                     "means (--absent_classes)")
    return "\n".join(lines)


def _default_output_dir(model, what):
    from semiseg_tf import trained
    suffix = "-" + model.options.tag() if model.options.tag() else ""
    if isinstance(model, trained.RunModel):
        return os.path.join(model.workdir, "evaluation", what + suffix)
    export = os.path.abspath(model.path)
    return os.path.join(os.path.dirname(export), "evaluation",
                        f"{os.path.basename(export)}-{what}{suffix}")


def evaluate(flag_values=flags.FLAGS, out=None):
    """The command, as a function: returns the scores dict (and writes the files)."""
    from semiseg_tf import evaluation, run_info, trained
    from semiseg_tf.data import pipeline
    out = out or sys.stdout
    config.check_max_image_pixels(flag_values.max_image_pixels)
    given_options = any(flag_values[name].present for name in inference_flags.TOPIC.names
                        if name != "eval_batch_size")
    if flag_values.saved_model:
        model = trained.open_model(saved_model=flag_values.saved_model, network=flag_values.network,
                                   checkpoint=flag_values.checkpoint, options_given=given_options)
        # An export is trusted for its model description only: its copy of the training flags
        # could name any folder to read or write, so the data to score are this command's.
        run_values = run_flag_values(None, flag_values)
        run_values["workdir"].value = model.path
    else:
        if not flag_values.workdir:
            raise config.ConfigError("give --workdir (a training run) or --saved_model (an export)")
        # The run's own inference flags, under those given here.
        workdir = os.path.abspath(os.path.expanduser(flag_values.workdir))
        if not os.path.isdir(workdir):
            raise config.ConfigError(f"--workdir={workdir}: no such folder")
        run_values = run_flag_values(os.path.join(workdir, run_info.FLAGS_FILE), flag_values)
        model = trained.open_model(workdir=flag_values.workdir, network=flag_values.network,
                                   checkpoint=flag_values.checkpoint,
                                   options=config.inference_options(run_values))
    native.set_max_image_pixels(config.network_limit(flag_values, "max_image_pixels", model.info))
    source, pairs, what = _data(model, run_values, flag_values, out)
    batch_size = run_values["eval_batch_size"].value
    print(f"scoring {model.description} on {what}", file=out, flush=True)
    progress = Progress("scored", evaluation.count_images(pairs), "images", out=out)
    # The labels alone: a large image predicted in tiles never holds its class probabilities.
    result = evaluation.score(lambda images: model.label_maps(images, max_probability=False)["labels"],
                              pipeline.validation_dataset(source, batch_size, pairs),
                              model.info.class_names, progress,
                              absent=flag_values.absent_classes)
    print(_table(result, model.info.class_names), file=out)
    output_dir = os.path.abspath(flag_values.output_dir or _default_output_dir(model, what))
    os.makedirs(output_dir, exist_ok=True)
    report = {"model": model.description, "set": what, "images": progress.done,
              "options": model.options.to_json(), "step": model.step, **result}
    atomic_write_bytes(os.path.join(output_dir, "scores.json"), json.dumps(report, indent=2).encode())
    picture, _ = visualise.confusion_picture(result["confusion"], model.info.class_names)
    atomic_write_bytes(os.path.join(output_dir, "confusion.png"), png_bytes(picture))
    print(f"wrote {output_dir}/scores.json and confusion.png", file=out)
    return report


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    evaluate()
    return 0


COMMAND_TOPICS = (run_flags.TOPIC, model_flags.TOPIC, TOPIC, data_flags.TOPIC, synthetic_flags.TOPIC,
                  inference_flags.TOPIC, limits_flags.TOPIC)

if __name__ == "__main__":
    flags.FLAGS.set_default("alsologtostderr", False)
    options.run_command(main, COMMAND_TOPICS)
