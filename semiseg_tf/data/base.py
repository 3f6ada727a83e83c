"""The interface every data source implements, and the labelled/unlabelled split."""
import abc

import numpy as np
import tensorflow as tf

from semiseg_tf import visualise
from semiseg_tf.data import native

IGNORE_LABEL = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DataSource(abc.ABC):
    """A segmentation dataset: training images addressed by index, plus a validation set.

    Subclasses (synthetic, Pascal VOC, Cityscapes, ISIC 2017, a user's folder) set the class attributes
    and implement the three methods. Images are uint8 RGB [H, W, 3]; labels uint8 [H, W] with 255 for
    pixels to ignore. Sizes may differ between images. A source of other images (more or fewer
    bands, 16 bits) says so in `pixels`, and gives one mean and standard deviation per band.
    """
    name: str
    class_names: tuple
    pixels: native.Pixels = native.PHOTO
    rgb_mean: tuple = IMAGENET_MEAN      # per band, of the pixels scaled to [0, 1]
    rgb_std: tuple = IMAGENET_STD
    # (height, width) when every image has that size, so validation images can be batched.
    fixed_image_size = None
    # The class colours ((r, g, b) per class) of pictures and label PNGs; None: the Pascal VOC map.
    class_palette = None

    @property
    def palette(self):
        """((r, g, b), ...) of every class."""
        if self.class_palette:
            return tuple(tuple(int(v) for v in colour) for colour in self.class_palette)
        return visualise.default_palette(self.num_classes)

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    @abc.abstractmethod
    def num_train(self):
        """Number of training images (labelled and unlabelled together)."""

    @abc.abstractmethod
    def read_train(self, index):
        """Returns (image, label) of training image `index` (a scalar int tensor) as TF tensors.

        Must be traceable: it runs inside `tf.data.Dataset.map`.
        """

    @abc.abstractmethod
    def validation(self):
        """A `tf.data.Dataset` of full-size (image, label) pairs, unbatched."""

    def test(self):
        """A `tf.data.Dataset` of the test set's (image, label) pairs, or None (the default)."""
        return None

    def train_image_sizes(self):
        """[num_train, 2] (height, width) of the training images, or None if unknown (by default
        from `fixed_image_size`)."""
        if self.fixed_image_size is None:
            return None
        return np.tile(np.asarray(self.fixed_image_size, np.int64), (self.num_train, 1))

    def class_pixel_counts(self):
        """[num_train, num_classes] int64: the pixels of each class in each training mask, or None
        when the source does not know them (for --class_weights)."""
        return None

    def labelled_split(self, n_sup, split_seed):
        """(labelled, unlabelled) training indices; by default the authors' permutation."""
        return labelled_split(self.num_train, n_sup, split_seed)


def labelled_split(num_train, n_sup, split_seed):
    """Chooses the labelled subset as the authors do.

    The labelled images are the first `n_sup` of `RandomState(split_seed).permutation(num_train)`; every
    training image, the labelled ones included, is in the unlabelled set.

    Returns:
      (labelled_indices, unlabelled_indices) as int64 numpy arrays.
    """
    order = np.random.RandomState(split_seed).permutation(num_train)
    labelled = order if n_sup == -1 else order[:n_sup]
    return labelled.astype(np.int64), np.arange(num_train, dtype=np.int64)


REPRESENTATIVE_CANDIDATES = 32


def representative_split(class_pixel_counts, n_sup, split_seed, candidates=REPRESENTATIVE_CANDIDATES):
    """A labelled subset whose class shares are close to the whole training set's.

    Draws `candidates` subsets of `n_sup` images (the first `n_sup` of successive permutations of one
    `RandomState(split_seed)`) and keeps the one whose share of pixels per class is nearest to the whole
    set's (L1 distance). With few labelled images a plain random draw can leave a class at half its
    usual share, and a semi-supervised teacher trained on that split then spreads the imbalance over
    the unlabelled images.

    Args:
      class_pixel_counts: [num_train, num_classes] labelled pixels of each class in each image.
    Returns:
      (labelled_indices, unlabelled_indices) as int64 numpy arrays; every image is unlabelled too.
    """
    counts = np.asarray(class_pixel_counts, np.float64)
    num_train = len(counts)
    if n_sup == -1 or n_sup >= num_train:
        return labelled_split(num_train, n_sup, split_seed)
    target = counts.sum(0) / counts.sum()
    rng = np.random.RandomState(split_seed)
    best, best_distance = None, np.inf
    for _ in range(candidates):
        subset = rng.permutation(num_train)[:n_sup]
        shares = counts[subset].sum(0) / max(counts[subset].sum(), 1.0)
        distance = np.abs(shares - target).sum()
        if distance < best_distance:
            best, best_distance = subset, distance
    return best.astype(np.int64), np.arange(num_train, dtype=np.int64)


def in_memory_reader(images, labels):
    """A `read_train` for sources held in memory as equal-size numpy arrays."""
    images = tf.constant(images)
    labels = tf.constant(labels)

    def read(index):
        return tf.gather(images, index), tf.gather(labels, index)
    return read
