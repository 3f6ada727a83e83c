"""Predict class maps for image files with a trained run or an exported SavedModel.

  python -m semiseg_tf.predict --workdir=runs/cutmix --input=photos/ --output=masks/
  python -m semiseg_tf.predict --saved_model=saved_models/cutmix/1 --input='photos/**/*.jpg' \\
      --output=masks/

For every image, OUTPUT/labels/NAME.png is its label map (a palette PNG: pixel values are the class
ids, colours the run's palette, so it reads back as ids) and OUTPUT/overlays/NAME.png the colours
over the photo; NAME is the input's path below the folder (or the glob's fixed folders) without
its extension, so that a label map pairs with its image as the trainer's folder layout pairs them.
Inputs of one name with different extensions (x.jpg, x.png) keep their extension instead
(x.jpg.png, x.png.png). Nothing is written outside OUTPUT, no input is overwritten (an output that
would land on one is an error before anything is written), and OUTPUT is not read as input. Images
of one size go through the model in batches (--eval_batch_size). A file that cannot be read, is
over --max_image_pixels or is a broken link is reported in one line and skipped; the exit status is
1 when any was.
"""
import collections
import os
import sys

import numpy as np
from absl import app, flags, logging

from semiseg_tf import config, options, visualise
from semiseg_tf.data import native
from semiseg_tf.errors import ConfigError, DataError
from semiseg_tf.files import png_bytes, write_in_folder
from semiseg_tf.options import inference as inference_flags
from semiseg_tf.options import limits as limits_flags
from semiseg_tf.options import model as model_flags
from semiseg_tf.options import run as run_flags
from semiseg_tf.progress import Progress

# The modules that load TensorFlow are imported in the functions that use them, so that --help
# answers without loading it.

TOPIC = options.Topic("Input and output", __name__)
TOPIC.define("string", "input", None, "The images: a folder (searched with its sub-folders), a "
        "glob ('photos/*.jpg'; '**' for any depth, quoted for the shell) or one file.")
TOPIC.define("string", "output", None, "Output folder: labels/ (class-id PNGs) and overlays/ "
        "(colours over the photo), with the input's relative names.")
TOPIC.define("float", "overlay_alpha", 0.5, "Weight of the class colours in the overlays, in "
        "[0, 1].")
TOPIC.define("boolean", "overlays", True, "Write the overlays (--nooverlays: label maps only).")
TOPIC.define("enum", "confidence", "none", ["none", "max_probability", "entropy"], "Also write "
        "OUTPUT/confidence/NAME.png, a 16-bit greyscale PNG (0-65535 for 0-1) of each pixel's "
        "max_probability (the predicted class's probability) or entropy (of the class "
        "probabilities, divided by log(classes): 0 certain, 1 a uniform guess).")
TOPIC.define("float", "min_confidence", 0.0, "Label the pixels whose max probability is below "
        "this 255 (ignore) in the label maps, overlays and pseudo-labels: where the model is "
        "unsure. 0: none.")
TOPIC.define("string", "pseudo_labels", None, "Also write the predictions as a folder dataset "
        "(--dataset=folder) in this folder: images/ (the inputs, copied), masks/ (the label maps, "
        "with --min_confidence's 255), classes.txt, palette.txt and labelled.txt (the images surest "
        "first, by mean max probability, so --n_sup=k takes the k surest). Review them, then "
        "train on them or copy them into your dataset.")


def _batches(paths_by_size, batch_size):
    """[(paths)] in batches of at most `batch_size` images of one size."""
    for paths in paths_by_size.values():
        for start in range(0, len(paths), batch_size):
            yield paths[start:start + batch_size]


def check_output(images, names, output, kinds):
    """ConfigError, before anything is written, when an output file (OUTPUT/KIND/NAME for each of
    `kinds`) would be an input file (through any link) or would not lie under `output`."""
    root = os.path.realpath(output)
    inputs = {os.path.realpath(path): path for path, _ in images}
    for path, name in names.items():
        for kind in kinds:
            target = os.path.realpath(os.path.join(root, kind, name))
            if target in inputs:
                raise ConfigError(f"--output={output}: {path}'s output would overwrite the input "
                                  f"{inputs[target]}; choose another --output")
            if os.path.commonpath([root, target]) != root:
                raise ConfigError(f"--output={output}: {path}'s output {target} would lie outside it")


def predict_files(model, images, output, batch_size, overlays=True, alpha=0.5, out=None,
                  skipped=0, confidence="none", min_confidence=0.0, pseudo_labels=None):
    """Writes label maps (and overlays, confidence maps, pseudo-labels: the flags of the same
    names) of `images` ([(path, relative path)]) under `output`; progress and skipped files go to
    `out` (default: stderr). `skipped`: files skipped before (broken links), counted with those
    skipped here.

    Returns:
      (written, failed): counts of images.
    """
    from semiseg_tf import confidence as confidence_lib
    from semiseg_tf.data import image_files
    out = out or sys.stderr
    palette = model.info.palette
    names = image_files.output_names(images)
    kinds = ["labels"] + ["overlays"] * overlays + ["confidence"] * (confidence != "none")
    check_output(images, names, output, kinds)
    folder = None
    if pseudo_labels:
        stems = {path: name[:-len(".png")] for path, name in names.items()}
        check_output(images, {path: stem + os.path.splitext(path)[1]
                              for path, stem in stems.items()}, pseudo_labels, ["images"])
        check_output(images, names, pseudo_labels, ["masks"])
        image_files.mark_as_output(pseudo_labels, "semiseg_tf.predict --pseudo_labels")
        folder = confidence_lib.PseudoLabelFolder(pseudo_labels, model.info.class_names, palette)
    image_files.mark_as_output(output, "semiseg_tf.predict --output")
    unopened = 0
    # The size from each header groups the images without decoding them; one that cannot even
    # be opened is reported here.
    by_size = collections.OrderedDict()
    for path, _ in images:
        try:
            by_size.setdefault(image_files.image_size(path), []).append(path)
        except DataError as error:
            print(f"skipped: {error}", file=out, flush=True)
            unopened += 1
    failed = unopened + skipped
    progress = Progress("predicted", len(images) + skipped, "images", out=out)
    progress.skipped = failed
    if not by_size:                # nothing could be opened: the bar still ends, with the count
        progress.update(failed)
    done = written = 0
    for paths in _batches(by_size, batch_size):
        pixels, kept = [], []
        for path in paths:
            try:
                pixels.append(image_files.read_image(path, model.info.pixels))
                kept.append(path)
            except DataError as error:
                print(f"skipped: {error}", file=out, flush=True)
                failed += 1
        try:
            predicted = None if not kept else _predict(model, np.stack(pixels), confidence, (
                confidence != "none" or min_confidence > 0 or folder is not None))
        except DataError as error:         # over what an export takes in one pass
            for path in kept:
                print(f"skipped: {path}: {error}", file=out, flush=True)
            failed += len(kept)
            kept = []
        if kept:
            for index, (path, image) in enumerate(zip(kept, pixels)):
                surest = predicted.get("max_probability", [None] * len(kept))[index]
                label = confidence_lib.ignore_unsure(predicted["labels"][index], surest,
                                                     min_confidence)
                label_png = visualise.label_png(label, palette)
                write_in_folder(os.path.join(output, "labels", names[path]), label_png)
                if overlays:
                    write_in_folder(os.path.join(output, "overlays", names[path]),
                                    png_bytes(visualise.overlay(visualise.display_rgb(image),
                                                                label, palette, alpha)))
                if confidence != "none":
                    write_in_folder(os.path.join(output, "confidence", names[path]),
                                    confidence_lib.png16(predicted[confidence][index]))
                if folder is not None:
                    folder.add(path, stems[path], label_png, surest)
                written += 1
        done += len(paths)
        progress.skipped = failed
        progress.update(unopened + skipped + done)
    if folder is not None:
        folder.close()
    return written, failed


def _predict(model, images, confidence, max_probability):
    """The label maps of `images`, with the confidence maps that `confidence` and
    `max_probability` ask for."""
    from semiseg_tf import confidence as confidence_lib
    if confidence == "entropy":
        predicted = model.predict(images)
        predicted["entropy"] = confidence_lib.normalised_entropy(predicted["probabilities"])
        predicted["max_probability"] = confidence_lib.max_probability(
            predicted.pop("probabilities"))
        return predicted
    # The two maps alone: a large image predicted in tiles never holds its class probabilities.
    return model.label_maps(images, max_probability=max_probability)


def main(argv):
    from semiseg_tf import trained
    from semiseg_tf.data import image_files
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    values = flags.FLAGS
    if not values.input or not values.output:
        raise config.ConfigError("--input (the images) and --output (a folder) are required")
    if not 0 <= values.overlay_alpha <= 1:
        raise config.ConfigError(f"--overlay_alpha={values.overlay_alpha}: must lie in [0, 1]")
    if not 0 <= values.min_confidence <= 1:
        raise config.ConfigError(f"--min_confidence={values.min_confidence}: must lie in [0, 1]")
    pseudo_labels = values.pseudo_labels and os.path.abspath(os.path.expanduser(
        values.pseudo_labels))
    if pseudo_labels and os.path.isdir(pseudo_labels) and os.listdir(pseudo_labels):
        raise config.ConfigError(f"--pseudo_labels={pseudo_labels}: not empty; give a new folder "
                                 "(its labelled.txt lists what one prediction wrote)")
    config.check_max_image_pixels(values.max_image_pixels)
    broken = []
    input_folder = os.path.realpath(os.path.expanduser(values.input))
    if os.path.isdir(input_folder) and os.path.commonpath(
            [input_folder, os.path.realpath(values.output)]) == os.path.realpath(values.output):
        raise config.ConfigError(f"--output={values.output}: "
                                 + ("is the --input folder" if input_folder == os.path.realpath(
                                     values.output) else f"holds the --input folder {values.input}")
                                 + "; predictions go to a folder of their own")
    images = image_files.list_images(values.input, exclude=values.output, broken=broken)
    if pseudo_labels:
        images = [(path, rel) for path, rel in images
                  if os.path.commonpath([os.path.realpath(path), os.path.realpath(pseudo_labels)])
                  != os.path.realpath(pseudo_labels)]
    given_options = any(values[name].present for name in inference_flags.TOPIC.names
                        if name != "eval_batch_size")
    model = trained.open_model(workdir=values.workdir, saved_model=values.saved_model,
                               network=values.network, checkpoint=values.checkpoint,
                               options=config.inference_options(values),
                               options_given=given_options)
    native.set_max_image_pixels(config.network_limit(values, "max_image_pixels", model.info))
    print(f"predicting {len(images)} images with {model.description}", file=sys.stderr,
          flush=True)
    written, failed = predict_files(model, images, os.path.abspath(values.output),
                                    values.eval_batch_size, values.overlays,
                                    values.overlay_alpha, skipped=len(broken),
                                    confidence=values.confidence,
                                    min_confidence=values.min_confidence,
                                    pseudo_labels=pseudo_labels)
    what = ["label maps"] + ["overlays"] * values.overlays + [
        f"{values.confidence} maps"] * (values.confidence != "none")
    print(f"wrote {written} {', '.join(what[:-1]) + ' and ' if len(what) > 1 else ''}{what[-1]} "
          f"to {os.path.abspath(values.output)}"
          + (f", and the pseudo-label dataset {pseudo_labels}" if pseudo_labels else "")
          + (f"; {failed} file(s) skipped (listed above)" if failed else ""))
    return 1 if failed else 0


COMMAND_TOPICS = (run_flags.TOPIC, model_flags.TOPIC, TOPIC, inference_flags.TOPIC,
                  limits_flags.TOPIC)

if __name__ == "__main__":
    flags.FLAGS.set_default("alsologtostderr", False)
    options.run_command(main, COMMAND_TOPICS)
