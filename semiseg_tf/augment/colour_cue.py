"""Whether the strong view's colour jitter contradicts the labels: a measurement before training.

FixMatch, UniMatch and UniMatch V2 teach the student to give the teacher's labels to a strong view
whose colours are jittered: the hue turned by up to a quarter of the colour wheel, one view in five
made grey. On photographs a class is rarely its colour, and the view is harmless. Where the classes
are coded by colour (stained tissue, false-colour or multispectral imagery, sorted objects on a
belt, the embedded synthetic dataset) the view recolours an object into another class's colours and
asks for its own label: the student learns to ignore a cue the labels rely on (docs/methods.md,
"When colour codes the classes").

The measurement: a colour-only classifier (how often each class's pixels fall in each of
HUE_BINS x SATURATION_BINS hue/saturation bins; a pixel goes to the class most likely to give its
bin) is fitted on every other labelled image and scores the rest, then the halves swap. Its accuracy,
balanced over the classes, is how much colour alone tells the classes apart; the same classifier on
the strong view of those images (the input pipeline's own colour op, DRAWS draws of each) is how much
of it the view leaves. Brightness is left out of the bins: it varies with the light more than with
the class.
"""
import dataclasses

import cv2
import numpy as np
import tensorflow as tf

from semiseg_tf.augment import colour

HUE_BINS, SATURATION_BINS = 24, 4
# At most this many labelled images, each read at most this many pixels on a side (a strided
# subsample): the figures are shares, which a sample gives, and the check stays cheap on any dataset.
MAX_IMAGES, MAX_SIDE = 64, 256
DRAWS = 4
# A warning is due when colour alone is a strong cue (its balanced accuracy at least this far from
# chance towards 1) and the strong view keeps less than this share of its margin over chance.
STRONG_CUE, KEPT_SHARE = 0.4, 0.7
# The strengths that change colour most, in the order in which turning one off is suggested.
COLOUR_CHANGES = ("hue", "greyscale_prob", "saturation", "contrast", "brightness")
# The strong view of FixMatch's, UniMatch's and UniMatch V2's published recipes.
PUBLISHED_VIEW = colour.ColourParams(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.25,
                                     prob=0.8, greyscale_prob=0.2)


@dataclasses.dataclass(frozen=True)
class ColourCue:
    """`alone`: the colour-only classifier's accuracy on held-out labelled pixels, balanced over
    the `classes` present; `after`: the same on the strong view of those pixels; both in [0, 1]."""
    alone: float
    after: float
    classes: int

    @property
    def chance(self):
        return 1.0 / self.classes

    @property
    def strength(self):
        """How far colour alone goes from chance towards telling every pixel's class (0 to 1);
        0 where there is one class (nothing to tell apart)."""
        return 0.0 if self.classes < 2 else (self.alone - self.chance) / (1.0 - self.chance)

    @property
    def kept(self):
        """The share of colour's margin over chance that the strong view leaves."""
        margin = self.alone - self.chance
        return 1.0 if margin <= 0 else (self.after - self.chance) / margin

    @property
    def contradicted(self):
        """Whether the classes are coded by colour and the strong view undoes much of it."""
        return self.strength >= STRONG_CUE and self.kept < KEPT_SHARE


def colour_bins(image):
    """The hue/saturation bin of every pixel of a uint8 RGB image [H, W, 3]: int [H, W]."""
    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV_FULL).astype(np.int64)
    return (hsv[..., 0] * HUE_BINS // 256) * SATURATION_BINS + hsv[..., 1] * SATURATION_BINS // 256


def _bin_counts(images, labels, num_classes):
    """[num_classes, bins]: how many labelled pixels of each class fall in each bin."""
    counts = np.zeros((num_classes, HUE_BINS * SATURATION_BINS), np.int64)
    for image, label in zip(images, labels):
        valid = label < num_classes
        np.add.at(counts, (label[valid].astype(np.int64), colour_bins(image)[valid]), 1)
    return counts


def _confusion(counts, images, labels, num_classes):
    """[true, predicted] pixel counts of the classifier of `counts` on `images`; a bin no fitted
    pixel fell in predicts no class (a miss for every class)."""
    likelihood = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    predicted = np.where(counts.sum(0) > 0, np.argmax(likelihood, 0), num_classes)
    confusion = np.zeros((num_classes, num_classes + 1), np.int64)
    for image, label in zip(images, labels):
        valid = label < num_classes
        np.add.at(confusion, (label[valid].astype(np.int64), predicted[colour_bins(image)[valid]]), 1)
    return confusion


def strong_views(images, params, draws=DRAWS, seed=0):
    """`draws` colour-jittered copies of each uint8 image (the pipeline's `colour.random_colour`
    with `params`, from fixed stateless seeds), as uint8, draw after draw."""
    views = []
    for draw in range(draws):
        for index, image in enumerate(images):
            rgb = tf.constant(image, tf.float32) / 255.0
            jittered = colour.random_colour(tf.constant([seed + draw, index], tf.int64), rgb, params)
            views.append(np.round(jittered.numpy() * 255.0).astype(np.uint8))
    return views


def measure(images, labels, num_classes, params, draws=DRAWS, seed=0):
    """A `ColourCue` of labelled uint8 RGB `images` [H, W, 3] and their `labels` [H, W] (class ids,
    others ignored) under the strong view of `params` (a `colour.ColourParams`)."""
    images, labels = list(images), [np.asarray(label) for label in labels]
    halves = [list(range(0, len(images), 2)), list(range(1, len(images), 2))]
    if not halves[1]:
        halves[1] = halves[0]         # one image: fitted and scored on itself
    clean = np.zeros((num_classes, num_classes + 1), np.int64)
    strong = np.zeros_like(clean)
    for fit, score in (halves, halves[::-1]):
        counts = _bin_counts([images[i] for i in fit], [labels[i] for i in fit], num_classes)
        held_images, held_labels = [images[i] for i in score], [labels[i] for i in score]
        clean += _confusion(counts, held_images, held_labels, num_classes)
        strong += _confusion(counts, strong_views(held_images, params, draws, seed),
                             held_labels * draws, num_classes)
    present = clean.sum(1) > 0

    def balanced(confusion):
        recall = np.diag(confusion[:, :num_classes]) / np.maximum(confusion.sum(1), 1)
        return float(recall[present].mean()) if present.any() else 0.0
    return ColourCue(balanced(clean), balanced(strong), max(int(present.sum()), 1))


@dataclasses.dataclass(frozen=True)
class ColourCheck:
    """`cue` under the view as configured; when it is `contradicted`, `changes` ({field of
    `ColourParams`: 0}) are the strengths to turn off, first those of COLOUR_CHANGES in order, until
    it no longer is, and `cue_after_changes` is the cue then."""
    cue: ColourCue
    changes: dict = dataclasses.field(default_factory=dict)
    cue_after_changes: ColourCue = None


def check(images, labels, num_classes, params, draws=DRAWS):
    """A `ColourCheck` of labelled `images` and `labels` (as `measure`'s) under `params`."""
    cue = measure(images, labels, num_classes, params, draws)
    if not cue.contradicted:
        return ColourCheck(cue)
    changes, after_changes = {}, cue
    for field in COLOUR_CHANGES:
        if getattr(params, field) == 0:
            continue
        changes[field] = 0
        after_changes = measure(images, labels, num_classes,
                                dataclasses.replace(params, **changes), draws)
        if not after_changes.contradicted:
            break
    return ColourCheck(cue, changes, after_changes)


def labelled_images(read, indices, max_images=MAX_IMAGES, max_side=MAX_SIDE):
    """(images, labels) as numpy arrays of at most `max_images` of `indices`, evenly spaced, each
    subsampled by a whole stride to at most `max_side` pixels a side; `read(index)` gives one
    (image, label) pair as arrays or tensors."""
    indices = np.asarray(indices)
    if len(indices) > max_images:
        indices = indices[np.linspace(0, len(indices) - 1, max_images).round().astype(int)]
    images, labels = [], []
    for index in indices:
        image, label = (np.asarray(value) for value in read(int(index)))
        stride = max(1, -(-max(image.shape[:2]) // max_side))
        images.append(image[::stride, ::stride])
        labels.append(label[::stride, ::stride])
    return images, labels


def check_source(source, labelled, params, draws=DRAWS):
    """`check` on a data source's labelled training images (`labelled`: their indices)."""
    images, labels = labelled_images(
        lambda index: source.read_train(tf.constant(index, tf.int64)), labelled)
    return check(images, labels, source.num_classes, params, draws)


def report(result, view, flag_names):
    """One line: the two figures of `result` (a `ColourCheck`) under `view` (words naming the
    strong view) and, when it contradicts the classes, the flags that keep colour (`flag_names`:
    {field of ColourParams: its flag}) with the figure they give."""
    cue = result.cue
    line = (f"a colour-only classifier (hue and saturation) is right on {100 * cue.alone:.0f}% of "
            f"the labelled pixels (balanced over {cue.classes} classes; chance "
            f"{100 * cue.chance:.0f}%), on {view} {100 * cue.after:.0f}%")
    if not cue.contradicted:
        return line
    keep = " ".join(f"--{flag_names[field]}={value}" for field, value in result.changes.items())
    return (f"{line}: the classes are coded by colour, and the view recolours objects into other "
            f"classes' colours while asking for their own labels; keep colour with {keep} "
            f"({100 * result.cue_after_changes.after:.0f}% then; docs/methods.md, \"When colour "
            "codes the classes\")")
