"""Loose image files, for evaluate and predict: listing a folder or a glob, and a folder of images with
their masks as a data source."""
import collections
import fnmatch
import glob
import os
import sys

import numpy as np
import tensorflow as tf

from semiseg_tf.data import base, layouts, native
from semiseg_tf.data.native import DataError, FileRef
from semiseg_tf.errors import ConfigError


# Every folder a command writes images into holds this file, so that a later command given a
# folder that contains it (a second predict over the same pool) does not read them as input.
OUTPUT_MARK = ".semiseg_tf_output"


def mark_as_output(folder, command):
    """Creates `folder` if need be and marks it as `command`'s output (see OUTPUT_MARK)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, OUTPUT_MARK)
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(f"Written by {command}. Folders holding this file are skipped when a folder "
                    "above them is given as input.\n")


def output_names(images):
    """{path: output name ('a/x.png')} of `images` ([(path, relative path)]): the relative path with
    a .png extension instead of its own, or with .png after its own where the names without
    extension would clash (compared without case: x.jpg, X.png). ConfigError when they clash even
    so, or a relative path leaves its folder."""
    def stem(relative):
        lower = relative.lower()
        ext = next(e for e in (*layouts.IMAGE_EXTENSIONS, "") if lower.endswith(e))
        return relative[:len(relative) - len(ext)] if ext else relative

    for path, relative in images:
        parts = relative.split(os.sep)
        if os.path.isabs(relative) or ".." in parts or "" in parts:
            raise ConfigError(f"{path}: its name below the input folder ({relative}) leaves it")
    clashes = collections.Counter(stem(rel).lower() for _, rel in images)
    names, taken = {}, {}
    for path, relative in images:
        name = (stem(relative) if clashes[stem(relative).lower()] == 1 else relative) + ".png"
        if name in taken:
            raise ConfigError(f"{path} and {taken[name]}: both would be written as {name}; "
                              "rename one")
        taken[name] = path
        names[path] = name
    return names


def list_images(pattern, flag="input", exclude=None, out=None, broken=None):
    """The image files of `pattern`: a folder (searched recursively), a glob (`photos/*.jpg`,
    `**` for any depth) or one file. Returns sorted [(path, relative path)], the relative path
    from the folder (or from the glob's fixed leading folders), so outputs can keep sub-folders.

    Symbolic links are followed, each folder and each file taken once (by its real path), so a
    link loop ends; files under `exclude` (a command's output folder) and under folders marked as
    an earlier command's output (OUTPUT_MARK) below the one named are left out. Broken links
    are reported in one line each on `out` (default: stderr) and added to the list `broken`.
    DataError, naming `--flag`, when the pattern goes up ('..') after a wildcard or nothing
    matches."""
    pattern = os.path.expanduser(pattern)
    hidden = os.path.isdir(pattern)      # a folder: every file in it; a glob: as the shell's
    if os.path.isdir(pattern):
        root, parts = pattern, ["**", "*"]
    elif glob.has_magic(pattern):
        split = pattern.split(os.sep)
        fixed = next(i for i, part in enumerate(split) if glob.has_magic(part))
        root = os.sep.join(split[:fixed]) or (os.sep if pattern.startswith(os.sep) else ".")
        parts = [part for part in split[fixed:] if part not in ("", ".")]
        if ".." in parts:
            raise DataError(f"--{flag}={pattern}: '..' after a wildcard is not supported; name the "
                            "folder without it")
    elif os.path.isfile(pattern):
        return [(pattern, os.path.basename(pattern))] if _is_image_name(pattern) else _none(
            flag, pattern)
    else:
        raise DataError(f"--{flag}={pattern}: no such file or folder")
    excluded = os.path.realpath(exclude) if exclude else None
    broken = [] if broken is None else broken
    seen_files, images = set(), []
    if parts[-1] == "**":
        parts = parts + ["*"]
    for path, relative in _walk_matching(root, parts, hidden, out or sys.stderr, broken):
        real = os.path.realpath(path)
        if real in seen_files or (excluded and _inside(real, excluded)):
            continue
        seen_files.add(real)
        images.append((path, relative))
    if not images:
        _none(flag, pattern)
    return sorted(images)


def _none(flag, pattern):
    raise DataError(f"--{flag}={pattern}: no image files there "
                    f"({', '.join(layouts.IMAGE_EXTENSIONS)})")


def _is_image_name(path):
    return os.path.basename(path).lower().endswith(layouts.IMAGE_EXTENSIONS)


def _inside(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk_matching(root, parts, hidden, out, broken):
    """(path, path relative to root) of the image files under `root` whose relative path matches
    the glob `parts` (one per path component; '**': any number of folders; names starting with '.'
    only where `hidden` or the part starts with '.'). Each folder is entered once per part, by its
    real path, so that symbolic-link loops end."""
    visited = set()

    def walk(folder, relative, parts):
        real = os.path.realpath(folder)
        if (real, tuple(parts)) in visited:
            return
        visited.add((real, tuple(parts)))
        if relative and os.path.exists(os.path.join(folder, OUTPUT_MARK)):
            return
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        head, rest = parts[0], parts[1:]
        if head == "**":
            yield from walk(folder, relative, rest) if rest else ()
        for entry in entries:
            name = os.path.join(relative, entry.name) if relative else entry.name
            if entry.is_symlink() and not os.path.exists(entry.path):
                # Reported where the last part is matched ('**' hands each folder on to it).
                if not rest and head != "**" and _is_image_name(entry.name) \
                        and fnmatch.fnmatch(entry.name, head):
                    print(f"skipped: {entry.path}: a broken symbolic link", file=out, flush=True)
                    broken.append(entry.path)
                continue
            is_dir = entry.is_dir()
            if entry.name.startswith(".") and not (hidden or head.startswith(".")):
                continue
            if head == "**":
                if is_dir:
                    yield from walk(entry.path, name, parts)
                continue
            if not fnmatch.fnmatch(entry.name, head):
                continue
            if rest and is_dir:
                yield from walk(entry.path, name, rest)
            elif not rest and entry.is_file() and _is_image_name(entry.name):
                yield entry.path, name

    yield from walk(root, "", parts)


def read_image(path, pixels=native.PHOTO):
    """The pixels of an image file for a run trained on `pixels` (a `native.Pixels`): uint8 RGB
    [H, W, 3] for photos, else the bands as stored. DataError (one line, naming the file) if it is
    unreadable or holds other bands or bits than the run's."""
    if pixels.photo:
        return native.decode_image(FileRef(path))[0]
    array, found = native.decode_pixels(FileRef(path))
    if found != pixels:
        raise DataError(f"{path}: {found}, but the model takes images of {pixels}")
    return array


def image_size(path):
    """(height, width) from the file's header, without decoding it; DataError if unreadable or
    over the pixel budget."""
    return native.image_size(FileRef(path))


class ImageMaskFolder(base.DataSource):
    """A folder of images and a folder of their masks (same relative names, any image extension), as
    a data source with a validation set only: what `evaluate --images=... --masks=...` scores.

    Masks are read as the training folders' are (native.decode_label): class ids, 255 to ignore;
    colour masks through `palette`; the run's --mask_values (`mask_values`) map raw values to
    classes. Every mask is checked before scoring starts. Images are read for a model of
    `pixels` (`native.Pixels`), normalised by `mean` and `std` (one value per band).
    """
    name = "images"

    def __init__(self, images_dir, masks_dir, class_names, palette=None, mask_values=(),
                 pixels=native.PHOTO, mean=base.IMAGENET_MEAN, std=base.IMAGENET_STD):
        self.class_names = tuple(class_names)
        self.pixels, self.rgb_mean, self.rgb_std = pixels, tuple(mean), tuple(std)
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
        image = read_image(image_path, self.pixels)
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
            generate, output_signature=(tf.TensorSpec([None, None, self.pixels.bands],
                                                      tf.as_dtype(self.pixels.dtype)),
                                        tf.TensorSpec([None, None], tf.uint8)))
        return dataset.apply(tf.data.experimental.assert_cardinality(len(self.pairs)))

