"""Data sources read from prepared records: Pascal VOC, Cityscapes, ISIC 2017, CamVid, a user's folder.

`build_prepared_source` lists the raw files (layouts.py), checks `--n_sup`/`--n_val` against them,
prepares the records once (records.py) and returns a `PreparedSource`.
"""
import hashlib
import os
import sys

import numpy as np
import tensorflow as tf

from semiseg_tf.data import base, layouts, native, records
from semiseg_tf.data.native import DataError


def _split_name(line, known):
    """The training name a split-file line means: the line itself, or, for lines that name files
    (UniMatch's "JPEGImages/2007_000032.jpg SegmentationClass/2007_000032.png"), the first file's
    name without folder and extension."""
    if line in known:
        return line
    first = line.split()[0]
    return os.path.splitext(os.path.basename(first))[0]


def _require_validation(dataset, has_validation_set, n_val):
    if not has_validation_set and n_val <= 0:
        raise DataError(f"--dataset={dataset}: no validation set; add val/images and val/masks to the "
                        "folder, or hold out labelled images with --n_val")


def default_prepared_dir(dataset, data_dir):
    """Where prepared records go without --prepared_dir: the user's cache, one folder per data folder."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    tag = hashlib.sha256(os.path.abspath(data_dir).encode()).hexdigest()[:10]
    return os.path.join(cache, "semiseg_tf", "prepared", f"{dataset}-{tag}")


class PreparedSource(base.DataSource):
    """A prepared dataset (see records.py).

    n_val > 0 holds out labelled training images for validation, as the authors' `--n_val` does:
    the training images are permuted by `RandomState(val_seed)`, the last `n_val`
    labelled ones validate, and the official validation set becomes the test set.
    split_file: a text file of training names in labelled-subset order (`--n_sup=k` labels the first
    k); it replaces the dataset's own order.
    palette: the class colours ((r, g, b) per class), or None for the Pascal VOC colour map.
    """

    def __init__(self, manifest, prepared_dir, n_val=0, val_seed=131, split_file=None, palette=None):
        self.name = manifest["dataset"]
        self.class_names = tuple(manifest["class_names"])
        self.class_palette = palette
        size = manifest.get("fixed_image_size")
        self.fixed_image_size = tuple(size) if size else None
        pixels = manifest.get("pixels") or {}
        self.pixels = native.Pixels(pixels.get("bands", 3), pixels.get("dtype", "uint8"))
        if pixels.get("mean"):
            self.rgb_mean, self.rgb_std = tuple(pixels["mean"]), tuple(pixels["std"])
        self._splits = {name: records.PreparedSplit.from_manifest(prepared_dir, entry)
                        for name, entry in manifest["splits"].items()}
        self._readers = {name: records.RecordReader(split) for name, split in self._splits.items()}
        train = self._splits["train"]
        self._listed_order = manifest["listed_order"] and not n_val
        self.train_ids = np.arange(len(train))
        self._val = ("val", np.arange(len(self._splits["val"]))) if "val" in self._splits else None
        self._test = ("test", np.arange(len(self._splits["test"]))) if "test" in self._splits else None
        if n_val > 0:
            order = np.random.RandomState(val_seed).permutation(len(train))
            labelled = order[train.labelled[order]]
            if n_val >= len(labelled):
                raise DataError(f"--n_val={n_val}: the {self.name} training set has only "
                                f"{len(labelled)} labelled images")
            held_out = labelled[-n_val:]
            self._test, self._val = self._val, ("train", held_out)
            self.train_ids = order[~np.isin(order, held_out)]
        _require_validation(self.name, self._val is not None, n_val)
        self._split_names = layouts.read_name_list(split_file) if split_file else None
        self._split_file = split_file

    @property
    def num_train(self):
        return len(self.train_ids)

    def train_image_sizes(self):
        """[num_train, 2] (height, width) of the training images."""
        return self._splits["train"].sizes[self.train_ids]

    def _labelled_positions(self):
        """Positions (indices into the training set) of the images that have labels."""
        return np.flatnonzero(self._splits["train"].labelled[self.train_ids])

    def labelled_split(self, n_sup, split_seed):
        candidates = self._labelled_positions()
        if self._split_names is not None:
            train = self._splits["train"]
            position = {train.names[r]: p for p, r in enumerate(self.train_ids)}
            labelled = set(candidates.tolist())
            order = []
            for line in self._split_names:
                name = _split_name(line, position)
                if position.get(name) not in labelled:
                    raise DataError(f"--split_file={self._split_file}: '{name}' is not a labelled "
                                    f"training image of {self.name}")
                order.append(position[name])
            order = np.array(order, np.int64)
        elif self._listed_order:
            order = candidates
        else:
            order = candidates[np.random.RandomState(split_seed).permutation(len(candidates))]
        if n_sup > len(order):
            raise DataError(f"--n_sup={n_sup}: more than the {len(order)} labelled training images "
                            f"of {self.name}")
        labelled = order if n_sup == -1 else order[:n_sup]
        if len(labelled) == 0:
            raise DataError(f"--n_sup={n_sup}: the labelled subset of {self.name} is empty")
        return labelled.astype(np.int64), np.arange(self.num_train, dtype=np.int64)

    def class_pixel_counts(self):
        """[num_train, num_classes] labelled pixels per class of each training image."""
        return self._splits["train"].class_counts(self.num_classes)[self.train_ids]

    def read_train(self, index):
        return self._read(self._readers["train"], self.train_ids, index)

    def _read(self, reader, record_ids, index):
        """(image, label) of record `record_ids[index]` of `reader`'s split (traceable)."""
        serialised = tf.numpy_function(lambda i: reader.read_serialised(int(record_ids[int(i)])),
                                       [index], tf.string, stateful=False)
        serialised.set_shape([])
        return records.decode_example(serialised, self.pixels)

    def _dataset(self, which):
        split, ids = which
        return (tf.data.Dataset.range(len(ids))
                .map(lambda i: self._read(self._readers[split], ids, i),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))

    def validation(self):
        return self._dataset(self._val)

    def test(self):
        """The test set's (image, label) pairs, or None when the dataset has none."""
        return None if self._test is None else self._dataset(self._test)

    def validation_names(self):
        split, ids = self._val
        return [self._splits[split].names[i] for i in ids]


def build_prepared_source(dataset, data_dir, prepared_dir=None, n_sup=10, n_val=0, val_seed=131,
                          split_file=None, num_classes=0, mask_values=(), workers=None,
                          out=sys.stderr):
    """Lists, checks, prepares (once) and opens a dataset; `DataError` for bad data or counts."""
    layout = layouts.LAYOUTS[dataset](data_dir, num_classes=num_classes, mask_values=mask_values)
    for note in layout.notes:
        print(note, file=out, flush=True)
    labelled = sum(s.label is not None for s in layout.splits["train"])
    # Checked before the (possibly long) preparation; PreparedSource checks the exact subset.
    if n_val > 0 and n_val >= labelled:
        raise DataError(f"--n_val={n_val}: the {dataset} training set in {data_dir} has only "
                        f"{labelled} labelled images, and some must be left to train on")
    if n_sup != -1 and n_sup > labelled - max(n_val, 0):
        held = f" ({n_val} held out by --n_val)" if n_val > 0 else ""
        raise DataError(f"--n_sup={n_sup}: more than the {labelled - max(n_val, 0)} labelled training "
                        f"images of {dataset} in {data_dir}{held}")
    _require_validation(dataset, "val" in layout.splits, n_val)
    if split_file and not os.path.isfile(split_file):
        raise DataError(f"--split_file={split_file}: no such file")
    prepared_dir = prepared_dir or default_prepared_dir(dataset, data_dir)
    # Every shard is re-hashed (about 1 s per GB): a shard damaged in place, its size unchanged, is
    # found here, named, and prepared again, instead of failing deep inside a training step.
    manifest = records.prepare(layout, prepared_dir, workers=workers, verify=True, out=out)
    return PreparedSource(manifest, prepared_dir, n_val=n_val, val_seed=val_seed,
                          split_file=split_file, palette=layouts.dataset_palette(dataset, data_dir))
