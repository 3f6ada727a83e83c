"""Loose image files, for evaluate and predict: listing a folder or a glob, and a folder of images with
their masks as a data source."""
import glob
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from semiseg_tf.data import base, layouts, native
from semiseg_tf.data.native import DataError, FileRef


def list_images(pattern, flag="input"):
    """The image files of `pattern`: a folder (searched recursively), a glob (`photos/*.jpg`,
    `**` for any depth) or one file. Returns sorted [(path, relative path)], the relative path
    from the folder (or from the glob's fixed leading folders), so outputs can keep sub-folders.
    DataError, naming `--flag`, when nothing matches."""
    pattern = os.path.expanduser(pattern)
    if os.path.isdir(pattern):
        root = pattern
        paths = [os.path.join(folder, name) for folder, _, names in os.walk(pattern)
                 for name in names]
    elif glob.has_magic(pattern):
        parts = pattern.split(os.sep)
        fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
        root = os.sep.join(parts[:fixed]) or "."
        paths = glob.glob(pattern, recursive=True)
    elif os.path.isfile(pattern):
        root, paths = os.path.dirname(pattern) or ".", [pattern]
    else:
        raise DataError(f"--{flag}={pattern}: no such file or folder")
    images = sorted((path, os.path.relpath(path, root)) for path in paths
                    if os.path.isfile(path)
                    and os.path.splitext(path)[1].lower() in layouts.IMAGE_EXTENSIONS)
    if not images:
        raise DataError(f"--{flag}={pattern}: no image files there "
                        f"({', '.join(layouts.IMAGE_EXTENSIONS)})")
    return images


def read_rgb(path):
    """uint8 RGB [H, W, 3] of an image file; DataError (one line, naming it) if unreadable."""
    return native.decode_image(FileRef(path))[0]


def image_size(path):
    """(height, width) from the file's header, without decoding it; DataError if unreadable."""
    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"{path}: not a readable image ({error})") from None


class ImageMaskFolder(base.DataSource):
    """A folder of images and a folder of their masks (same relative names, any image extension), as
    a data source with a validation set only: what `evaluate --images=... --masks=...` scores.

    Masks are read as the training folders' are (native.decode_label): class ids, 255 to ignore;
    colour masks through `palette`; the run's --mask_values (`mask_values`) map raw values to
    classes. Every mask is checked before scoring starts.
    """
    name = "images"

    def __init__(self, images_dir, masks_dir, class_names, palette=None, mask_values=()):
        self.class_names = tuple(class_names)
        self.class_palette = palette
        self.mask_values = tuple(mask_values)
        for flag, folder in (("images", images_dir), ("masks", masks_dir)):
            if not os.path.isdir(folder):
                raise DataError(f"--{flag}={folder}: no such folder")
        masks = {os.path.splitext(rel)[0]: path for path, rel in list_images(masks_dir, "masks")}
        self.pairs = []
        for path, rel in list_images(images_dir, "images"):
            stem = os.path.splitext(rel)[0]
            if stem not in masks:
                raise DataError(f"{path}: no mask for it in {masks_dir} (expected {stem}.png)")
            self.pairs.append((path, masks[stem]))
        sizes = {image_size(path) for path, _ in self.pairs}
        self.fixed_image_size = sizes.pop() if len(sizes) == 1 else None

    @property
    def num_train(self):
        return 0

    def read_train(self, index):
        raise NotImplementedError("an image-and-mask folder has no training set")

    def _read(self, index):
        image_path, mask_path = self.pairs[index]
        image = read_rgb(image_path)
        label = native.decode_label(FileRef(mask_path), self.class_palette)
        if self.mask_values:
            label = native.map_mask_values(mask_path, label, self.mask_values)
        if label.shape != image.shape[:2]:
            raise DataError(f"{mask_path}: mask size {label.shape[1]}x{label.shape[0]} differs from "
                            f"its image's {image.shape[1]}x{image.shape[0]}")
        bad = np.unique(label[(label != base.IGNORE_LABEL) & (label >= self.num_classes)])
        if bad.size:
            raise DataError(f"{mask_path}: label values {', '.join(map(str, bad[:5]))} are outside "
                            f"the model's {self.num_classes} classes (0-{self.num_classes - 1}) and "
                            "are not 255 (ignore)")
        return image, label.astype(np.uint8)

    def check(self):
        """Reads every pair once, so a bad file stops evaluation before it starts."""
        for index in range(len(self.pairs)):
            self._read(index)

    def validation(self):
        def generate():
            for index in range(len(self.pairs)):
                yield self._read(index)
        dataset = tf.data.Dataset.from_generator(
            generate, output_signature=(tf.TensorSpec([None, None, 3], tf.uint8),
                                        tf.TensorSpec([None, None], tf.uint8)))
        return dataset.apply(tf.data.experimental.assert_cardinality(len(self.pairs)))

