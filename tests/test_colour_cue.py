"""The colour check (augment/colour_cue.py): colour alone telling the classes apart, and a strong
view that undoes it, caught before training; silent where colour says nothing of the class."""
import dataclasses
import importlib.util
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from semiseg_tf import training
from semiseg_tf.augment import colour, colour_cue
from semiseg_tf.data import synthetic
from semiseg_tf.options import strong_augmentation

from conftest import parse_flags

# What flags/demo/fixmatch.flags keeps of the published view: no hue jitter, no greyscale.
ADAPTED_VIEW = dataclasses.replace(colour_cue.PUBLISHED_VIEW, hue=0.0, greyscale_prob=0.0)
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg",
          "retina.jpg")


def solid(rgb, size=8):
    return np.broadcast_to(np.array(rgb, np.uint8), (size, size, 3)).copy()


def test_the_classifier_scores_hand_made_colours_as_counted():
    """Red class 1, red class 2, blue class 3, as many pixels each: the red bin goes to class 1
    (ties to the first), so recalls 1, 0, 1 and a balanced accuracy of 2/3; no jitter leaves it."""
    images = [np.concatenate([solid((255, 0, 0)), solid((255, 0, 0)), solid((0, 0, 255))], axis=1)] * 2
    label = np.concatenate([np.full((8, 8), k, np.uint8) for k in (1, 2, 3)], axis=1)
    still = colour.ColourParams(0, 0, 0, 0, prob=1.0, greyscale_prob=0.0)
    cue = colour_cue.measure(images, [label, label], 4, still)
    assert (cue.alone, cue.after, cue.classes) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 3)


def test_a_grey_view_leaves_saturated_classes_nothing():
    """Greyscale always: every pixel falls in a bin of saturation 0, where no fitted pixel fell."""
    images = [np.concatenate([solid((200, 30, 30)), solid((30, 30, 200))], axis=1)] * 2
    label = np.concatenate([np.zeros((8, 8), np.uint8), np.ones((8, 8), np.uint8)], axis=1)
    grey = colour.ColourParams(0, 0, 0, 0, prob=1.0, greyscale_prob=1.0)
    cue = colour_cue.measure(images, [label, label], 2, grey)
    assert (cue.alone, cue.after, cue.kept) == (1.0, 0.0, -1.0)
    assert cue.contradicted


def test_one_class_has_nothing_to_tell_apart():
    image, label = solid((200, 30, 30)), np.ones((8, 8), np.uint8)
    cue = colour_cue.measure([image, image], [label, label], 3, colour_cue.PUBLISHED_VIEW)
    assert cue.classes == 1 and cue.strength == 0 and not cue.contradicted


@pytest.fixture(scope="module")
def embedded():
    """The demo's 10 labelled images of the embedded dataset."""
    source = synthetic.SyntheticSource()
    labelled, _ = source.labelled_split(10, 12345)
    return source.train_images[labelled], source.train_labels[labelled]


def test_it_fires_on_the_embedded_dataset_with_the_published_view_and_names_the_flags(embedded):
    result = colour_cue.check(*embedded, 6, colour_cue.PUBLISHED_VIEW)
    cue = result.cue
    assert cue.contradicted and cue.alone > 0.5 and cue.after < cue.alone - 0.1
    assert "hue" in result.changes and not result.cue_after_changes.contradicted
    line = colour_cue.report(result, "this run's strong view", strong_augmentation.TOPIC.fields)
    assert "\n" not in line and "--aug_colour_hue=0" in line
    assert f"right on {100 * cue.alone:.0f}% " in line and f"view {100 * cue.after:.0f}%" in line


def test_it_is_silent_with_the_view_adapted_to_the_dataset(embedded):
    assert not colour_cue.check(*embedded, 6, ADAPTED_VIEW).cue.contradicted


def test_it_is_silent_on_the_same_scenes_with_hue_drawn_apart_from_the_class():
    images, labels = synthetic.make_scenes([0, 0], 10, 64, hue_by_class=False)
    cue = colour_cue.check(images, labels, 6, colour_cue.PUBLISHED_VIEW).cue
    assert cue.strength < 0.1 and not cue.contradicted


def photo_scenes(count, size=64, seed=0):
    """The embedded dataset's shapes (the class) cut from photographs (scikit-image's), on a
    background cut from another: natural colours that say nothing of the class."""
    folder = os.path.join(os.path.dirname(importlib.util.find_spec("skimage").origin), "data")
    photos = [np.asarray(Image.open(os.path.join(folder, name)).convert("RGB")) for name in PHOTOS]
    rng = np.random.default_rng(seed)

    def cut():
        photo = photos[rng.integers(len(photos))]
        side = int(rng.integers(size, min(photo.shape[:2])))
        y, x = (int(rng.integers(photo.shape[k] - side + 1)) for k in (0, 1))
        piece = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.BOX)
        return np.asarray(piece, np.float64)

    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    images, labels = [], []
    for _ in range(count):
        image, label = cut(), np.zeros((size, size), np.uint8)
        for _ in range(rng.integers(2, 5)):
            kind = int(rng.integers(1, 6))
            inside = synthetic._signed_distance(kind, ys, xs, *rng.uniform(0.1, 0.9, 2) * size,
                                                rng.uniform(0.13, 0.28) * size,
                                                rng.uniform(0, 2 * np.pi)) < 0
            image[inside] = cut()[inside]
            label[inside] = kind
        images.append(image.astype(np.uint8))
        labels.append(label)
    return images, labels


def test_it_is_silent_on_scenes_cut_from_photographs():
    images, labels = photo_scenes(10)
    cue = colour_cue.check(images, labels, 6, colour_cue.PUBLISHED_VIEW).cue
    assert not cue.contradicted


def test_large_images_are_read_as_a_bounded_subsample():
    images = {i: (np.full((1000, 600, 3), i, np.uint8), np.zeros((1000, 600), np.uint8))
              for i in range(100)}
    read = []
    got, labels = colour_cue.labelled_images(lambda i: read.append(i) or images[i], range(100),
                                             max_images=8, max_side=256)
    assert len(read) == 8 and read[0] == 0 and read[-1] == 99
    assert all(image.shape == (250, 150, 3) for image in got)
    assert all(label.shape == (250, 150) for label in labels)


def train_output(tmp_path, recipe, **overrides):
    """What a trainer of `recipe` prints while it is built, and the trainer."""
    cfg, text = parse_flags(flagfile=recipe, workdir=str(tmp_path / "run"), **overrides)
    out = io.StringIO()
    trainer = training.Trainer(cfg, text, out=out)
    return out.getvalue(), trainer


def test_training_with_the_published_view_warns_in_one_line_and_still_trains(tmp_path):
    printed, trainer = train_output(tmp_path, "flags/demo/as_published/unimatch_v2.flags",
                                    train_steps=2, eval_every=2, synthetic_num_val=4)
    warnings = [line for line in printed.splitlines() if "colour-only classifier" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ")
    assert "--aug_colour_hue=0" in warnings[0]
    assert trainer.run().finished


def test_training_with_the_adapted_view_does_not_warn(tmp_path):
    printed, _ = train_output(tmp_path, "flags/demo/unimatch_v2.flags", train_steps=1)
    assert "colour-only classifier" not in printed


def test_prepare_prints_the_published_views_figures_in_its_summary(tmp_path):
    """The embedded scenes as a user's folder: prepare's summary has the check's line, with the
    flags that keep colour."""
    synthetic.write_samples(str(tmp_path / "data"), 12, split="train")
    synthetic.write_samples(str(tmp_path / "data" / "val"), 2, split="val")
    done = subprocess.run([sys.executable, "-m", "semiseg_tf.prepare", "--dataset=folder",
                           f"--data_dir={tmp_path}/data", f"--prepared_dir={tmp_path}/prepared"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    colour_lines = [line for line in done.stdout.splitlines() if line.startswith("  colour: ")]
    assert len(colour_lines) == 1, done.stdout
    assert ("on the published strong view of FixMatch, UniMatch and UniMatch V2" in colour_lines[0]
            and "--aug_colour_hue=0" in colour_lines[0])
