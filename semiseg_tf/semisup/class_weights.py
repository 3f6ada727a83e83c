"""Class weights of the supervised loss, for datasets whose classes are far from balanced.

Computed from the labelled masks' pixel counts per class (which preparation records per image):

- "inverse": w_c = N / (K n_c), with n_c the labelled pixels of class c, N their total and K the
  number of classes present: rare classes weigh more, and the average weight of a pixel is 1.
- "median": median frequency balancing (Eigen and Fergus 2015, as SegNet): f_c = n_c / (pixels of
  the images where c occurs), w_c = median(f) / f_c over the classes present.

A class with no labelled pixel gets weight 1; no pixel of the loss carries it.
"""
import os

import numpy as np

from semiseg_tf.errors import ConfigError

KINDS = ("none", "inverse", "median")
# A weights file holds one number per class: one larger than this is not read.
MAX_FILE_BYTES = 2 ** 20
# The loss runs in float32: a nonzero weight must be a normal float32 number, and small enough
# that weights times a batch's pixels (and their cross-entropies) stay finite.
SMALLEST, LARGEST = float(np.finfo(np.float32).tiny), 1e20


def from_counts(counts, kind):
    """[C] float64 weights of `kind` from [images, C] pixel counts of the labelled masks."""
    counts = np.asarray(counts, np.float64)
    per_class = counts.sum(0)
    present = per_class > 0
    weights = np.ones(counts.shape[1])
    if not present.any():
        return weights
    if kind == "inverse":
        weights[present] = per_class.sum() / (present.sum() * per_class[present])
    elif kind == "median":
        image_pixels = counts.sum(1, keepdims=True)
        # The pixels of the images in which each class occurs.
        exposure = ((counts > 0) * image_pixels).sum(0)
        frequency = per_class[present] / exposure[present]
        weights[present] = np.median(frequency) / frequency
    else:
        raise ValueError(f"kind={kind!r}: expected 'inverse' or 'median'")
    return weights


def read(path, num_classes):
    """The weights of a text file: `num_classes` numbers, each 0 or between SMALLEST and LARGEST
    (separated by commas, spaces or lines; '#' starts a comment), not all 0; ConfigError naming
    the file otherwise. A file over MAX_FILE_BYTES is refused unread."""
    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise ConfigError(f"--class_weights={path}: not a file of numbers ({error})") from None
    if size > MAX_FILE_BYTES:
        raise ConfigError(f"--class_weights={path}: {size} bytes, more than a file of one number "
                          f"per class needs ({MAX_FILE_BYTES} at most)")
    try:
        with open(path, encoding="utf-8") as f:
            text = " ".join(line.split("#", 1)[0] for line in f)
        weights = np.array([float(v) for v in text.replace(",", " ").split()], np.float64)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"--class_weights={path}: not a file of numbers ({error})") from None
    if len(weights) != num_classes:
        raise ConfigError(f"--class_weights={path}: holds {len(weights)} weights; the dataset has "
                          f"{num_classes} classes (one weight per class, in class order)")
    usable = (weights == 0) | ((weights >= SMALLEST) & (weights <= LARGEST))
    if not usable.all() or weights.max() == 0:
        raise ConfigError(f"--class_weights={path}: each weight must be 0 or between {SMALLEST:.3g} "
                          f"and {LARGEST:.0e} (the loss runs in float32), and not all 0")
    return weights


def for_run(spec, num_classes, labelled_counts):
    """The weights --class_weights=`spec` asks for (None for 'none'). `labelled_counts`: [labelled
    images, C] pixel counts, or None when the source does not know them."""
    if spec == "none":
        return None
    if spec in KINDS:
        if labelled_counts is None:
            raise ConfigError(f"--class_weights={spec}: this dataset's class pixel counts are not "
                              "known; give a file of weights")
        return from_counts(labelled_counts, spec)
    return read(spec, num_classes)
