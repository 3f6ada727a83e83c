"""Which images to label next: rank an unlabelled pool with a trained run (or an export) and write
the chosen ones as a folder to label.

  python -m semiseg_tf.select --workdir=runs/cutmix --pool=unlabelled/ --budget=50 --to_label=to_label/

Each image of --pool (a folder, a glob or a file, read as predict reads its --input) is scored by
how unsure the model is of it (--select_by; semiseg_tf/selection.py says how each is computed and
where it comes from), and the --budget most worth labelling are chosen; with --diversity (the
default) they are chosen among the most unsure by k-center greedy on their pooled class
probabilities, so that the batch is not many copies of one hard scene. --to_label then holds:

  selected.csv          rank, score and path of each chosen image, most worth labelling first
  overlays/NAME.png     each chosen image with the model's classes over it, for the annotator
  images/NAME.EXT       the chosen files, copied byte for byte
  masks/                empty: put each image's mask here (NAME.png, class ids; docs/data.md)
  classes.txt, palette.txt, labelled.txt (the chosen names, most worth labelling first)

Once the masks are in, it is a folder dataset (`--dataset=folder --data_dir=...`), or its images
and masks join yours. Nothing is written into the pool; --to_label must be a new or empty folder
outside it. A pool file that cannot be read, or is over --max_image_pixels, is reported in one line
and skipped, as predict does.
"""
import csv
import io
import os
import shutil
import sys

import cv2
import numpy as np
from absl import app, flags, logging

from semiseg_tf import config, options, selection, visualise
from semiseg_tf.data import layouts, native
from semiseg_tf.errors import ConfigError, DataError
from semiseg_tf.files import png_bytes, write_in_folder
from semiseg_tf.options import inference as inference_flags
from semiseg_tf.options import limits as limits_flags
from semiseg_tf.options import model as model_flags
from semiseg_tf.options import run as run_flags
from semiseg_tf.progress import Progress

# The modules that load TensorFlow are imported in the functions that use them, so that --help
# answers without loading it.

TOPIC = options.Topic("Selection", __name__)
TOPIC.define("string", "pool", None, "The unlabelled images to choose from: a folder (searched "
        "with its sub-folders), a glob ('photos/*.jpg') or one file.")
TOPIC.define("integer", "budget", None, "How many images to choose for labelling.")
TOPIC.define("string", "to_label", None, "A new or empty folder outside --pool for the chosen "
        "images (images/, masks/ to fill, selected.csv, overlays/).")
TOPIC.define("enum", "select_by", "entropy", [*selection.STRATEGIES, "random"], "How an image is "
        "scored: entropy (the mean normalised entropy of its pixels' class probabilities), margin "
        "(the mean of 1 - the gap between the two likeliest classes), unsure (the share of pixels "
        "under --unsure_threshold), disagreement (the share of pixels the teacher and the student "
        "of --workdir label differently), or random (a uniform draw, the baseline to beat).")
TOPIC.define("float", "unsure_threshold", 0.97, "--select_by=unsure: a pixel is unsure when its "
        "largest class probability is under this (0.97: the demo's confidence threshold).")
TOPIC.define("boolean", "diversity", True, "Choose among the --candidates x --budget highest "
        "scores by k-center greedy on each image's class probabilities pooled to a 4x4 grid, so "
        "that near-duplicates are not chosen together (--nodiversity: the highest scores).")
TOPIC.define("integer", "candidates", 4, "--diversity: how many times --budget of the highest "
        "scores the diverse batch is chosen from.")
TOPIC.define("boolean", "rare_classes", False, "Multiply each score by a weight that grows with "
        "the share of the image predicted as classes rare over the whole pool's predictions "
        "(selection.rare_class_weight), so that images holding rare classes come first.")
TOPIC.define("integer", "selection_seed", 0, "--select_by=random: the seed of the draw.")

# The grid an image's class probabilities are pooled to for --diversity (the same length for
# images of any size).
GRID = 4


def pooled(probabilities):
    """[GRID * GRID * C] an image's class probabilities [H, W, C] averaged over a GRID x GRID grid
    (area interpolation): where in the image which classes are, as a fixed-length vector."""
    p = np.asarray(probabilities, np.float32)
    cells = [cv2.resize(p[..., c], (GRID, GRID), interpolation=cv2.INTER_AREA)
             for c in range(p.shape[-1])]
    return np.stack(cells, -1).ravel()


def score_pool(models, images, values, out):
    """[(path, score, features, class shares)] of the readable `images` ([(path, relative
    path)]) and the count of those skipped (one line each on `out`). `models`: the evaluated
    network's model, then the student's for --select_by=disagreement."""
    from semiseg_tf.data import image_files
    rng = np.random.default_rng(values.selection_seed)
    pixels = models[0].info.pixels
    scored, skipped = [], 0
    progress = Progress("scored", len(images), "images", out=out)
    for done, (path, _) in enumerate(images, 1):
        try:
            image = image_files.read_image(path, pixels)[None]
            outputs = [model.predict(image)["probabilities"][0] for model in models]
        except DataError as error:
            print(f"skipped: {path}: {error}" if path not in str(error) else f"skipped: {error}",
                  file=out, flush=True)
            skipped += 1
        else:
            if values.select_by == "random":
                score = float(rng.random())
            else:
                score = selection.uncertainty(
                    outputs[0], values.select_by, values.unsure_threshold,
                    student_probabilities=outputs[1] if len(outputs) > 1 else None)
            scored.append((path, score, pooled(outputs[0]) if values.diversity else None,
                           selection.class_shares(outputs[0])))
        progress.update(done)
    return scored, skipped


def write_selection(folder, chosen, names, model, alpha=0.5):
    """The files of --to_label `folder` for `chosen` ([(path, score)], most worth labelling first)."""
    from semiseg_tf.data import image_files
    info = model.info
    rows = io.StringIO()
    table = csv.writer(rows, lineterminator="\n")
    table.writerow(["rank", "score", "image"])
    stems = []
    for rank, (path, score) in enumerate(chosen, 1):
        stem = names[path][:-len(".png")]
        stems.append(stem)
        table.writerow([rank, f"{score:.6f}", path])
        image_copy = os.path.join(folder, "images", stem + os.path.splitext(path)[1])
        os.makedirs(os.path.dirname(image_copy), exist_ok=True)
        shutil.copyfile(path, image_copy)
        image = image_files.read_image(path, info.pixels)
        labels = model.label_maps(image[None], max_probability=False)["labels"][0]
        write_in_folder(os.path.join(folder, "overlays", stem + ".png"),
                        png_bytes(visualise.overlay(visualise.display_rgb(image), labels,
                                                    info.palette, alpha)))
    os.makedirs(os.path.join(folder, "masks"), exist_ok=True)
    write_in_folder(os.path.join(folder, "selected.csv"), rows.getvalue().encode())
    write_in_folder(os.path.join(folder, "labelled.txt"),
                    "".join(f"{s}\n" for s in stems).encode())
    layouts.write_class_files(folder, info.class_names, info.palette)


def check_flags(values):
    """ConfigError (one line) for a missing or wrong flag; the output folder, absolute."""
    if not values.pool or not values.to_label or values.budget is None:
        raise ConfigError("--pool (the unlabelled images), --budget (how many to choose) and "
                          "--to_label (a new folder) are required")
    if values.budget < 1:
        raise ConfigError(f"--budget={values.budget}: must be positive")
    if values.candidates < 1:
        raise ConfigError(f"--candidates={values.candidates}: must be positive")
    if not 0 < values.unsure_threshold <= 1:
        raise ConfigError(f"--unsure_threshold={values.unsure_threshold}: must lie in (0, 1]")
    if values.select_by == "disagreement" and not values.workdir:
        raise ConfigError("--select_by=disagreement: needs --workdir (a run's teacher and student; "
                          "an export holds one network)")
    output = os.path.realpath(os.path.expanduser(values.to_label))
    pool = os.path.realpath(os.path.expanduser(values.pool))
    if os.path.isdir(pool) and os.path.commonpath([pool, output]) == pool:
        raise ConfigError(f"--to_label={values.to_label}: inside --pool; nothing is written there")
    if os.path.isdir(output) and os.listdir(output):
        raise ConfigError(f"--to_label={values.to_label}: not empty; give a new folder")
    return output


def main(argv):
    from semiseg_tf import trained
    from semiseg_tf.data import image_files
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    values = flags.FLAGS
    output = check_flags(values)
    config.check_max_image_pixels(values.max_image_pixels)
    broken = []
    images = image_files.list_images(values.pool, flag="pool", exclude=output, broken=broken)
    given_options = any(values[name].present for name in inference_flags.TOPIC.names
                        if name != "eval_batch_size")
    open_model = dict(workdir=values.workdir, saved_model=values.saved_model,
                      checkpoint=values.checkpoint, options=config.inference_options(values),
                      options_given=given_options)
    models = [trained.open_model(network=values.network, **open_model)]
    if values.select_by == "disagreement":
        models.append(trained.open_model(network="student", **open_model))
    native.set_max_image_pixels(config.network_limit(values, "max_image_pixels", models[0].info))
    print(f"scoring {len(images)} images by {values.select_by} with {models[0].description}",
          file=sys.stderr, flush=True)
    names = image_files.output_names(images)
    scored, skipped = score_pool(models, images, values, sys.stderr)
    if not scored:
        raise DataError(f"--pool={values.pool}: no image could be scored")
    scores = [score for _, score, _, _ in scored]
    if values.rare_classes:
        # How often each class is predicted over the pool, pixels weighed alike per image.
        frequency = np.mean([shares for _, _, _, shares in scored], axis=0)
        scores = [score * selection.rare_class_weight(shares, frequency)
                  for (_, score, _, shares) in scored]
    features = np.stack([f for _, _, f, _ in scored]) if values.diversity else None
    picked = selection.choose(scores, values.budget, features, values.candidates)
    image_files.mark_as_output(output, "semiseg_tf.select --to_label")
    write_selection(output, [(scored[i][0], scores[i]) for i in picked], names, models[0])
    print(f"chose {len(picked)} of {len(scored)} images by {values.select_by}"
          + (" with diversity" if values.diversity else "") + f": {output}/selected.csv; add their "
          f"masks to {output}/masks/" + (f"; {skipped + len(broken)} file(s) skipped (listed "
                                         "above)" if skipped or broken else ""))
    return 1 if skipped or broken else 0


COMMAND_TOPICS = (run_flags.TOPIC, model_flags.TOPIC, TOPIC, inference_flags.TOPIC,
                  limits_flags.TOPIC)

if __name__ == "__main__":
    flags.FLAGS.set_default("alsologtostderr", False)
    options.run_command(main, COMMAND_TOPICS)
