"""Prepared datasets: sharded TFRecord files with a manifest, made once and read by index.

`prepare(layout, prepared_dir)` converts every raw sample (native.convert, on parallel threads)
into a `tf.train.Example` with the encoded image and label, written in order into shards of about
`SHARD_BYTES`. Each shard is written under a temporary name and renamed when complete; the
manifest, which lists the shards with their sizes and SHA-256 digests, the byte offset of every record
and each label's class counts, is written last, also by a rename. A preparation that was killed
therefore has no manifest, and is redone. So is one whose raw files, conversion or format changed
(the manifest's `key`), or whose shards no longer have the recorded sizes; `verify=True` (the
`prepare` command's default) also re-hashes every shard. A lock file serialises preparations of the
same folder by several processes (e.g. the workers of one multi-worker job).

Reading: the training pipeline addresses samples by index (every sample is a function of its stream
position, data/pipeline.py), so `RecordReader` reads record i with one positioned read at its recorded
offset: random access, parallel (tf.data map workers), and no data held in memory. The shards stay
ordinary TFRecord files that `tf.data.TFRecordDataset` also reads.
"""
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import multiprocessing.pool
import os
import shutil
import sys
import time

import numpy as np
import tensorflow as tf

from semiseg_tf.data import native
from semiseg_tf.files import atomic_write_bytes
from semiseg_tf.progress import Progress
from semiseg_tf.data.native import DataError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARD_BYTES = 256 * 2 ** 20
# A TFRecord is: uint64 length, uint32 CRC of the length, the data, uint32 CRC of the data.
_RECORD_HEADER, _RECORD_OVERHEAD = 12, 16
_FEATURES = {
    "name": tf.io.FixedLenFeature([], tf.string),
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.string),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
}


def _bytes_feature(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def serialise(sample):
    """A `native.PreparedSample` as a serialised `tf.train.Example`."""
    return tf.train.Example(features=tf.train.Features(feature={
        "name": _bytes_feature(sample.name.encode()),
        "image": _bytes_feature(sample.image),
        "label": _bytes_feature(sample.label),
        "height": _int_feature(sample.height),
        "width": _int_feature(sample.width),
    })).SerializeToString()


def layout_key(layout):
    """What the prepared records depend on: format, dataset, conversion, and every raw file's path,
    size and modification time (a changed or replaced file makes the preparation stale)."""
    refs = [ref for samples in layout.splits.values() for s in samples for ref in (s.image, s.label)]
    listing = json.dumps({split: [s.name for s in samples] for split, samples in layout.splits.items()})
    digest = hashlib.sha256()
    digest.update(repr(native.file_fingerprint(refs)).encode())
    digest.update(listing.encode())
    return {"format": FORMAT_VERSION, "dataset": layout.dataset,
            "conversion": repr(layout.conversion), "raw_files": digest.hexdigest()}


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2 ** 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(prepared_dir):
    """The manifest, or None when there is none (never prepared, or a preparation was cut short)."""
    path = os.path.join(prepared_dir, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def check_prepared(prepared_dir, manifest, key, verify=False):
    """Why the prepared records cannot be used, or None when they can.

    Checks the manifest's key against `key` (`layout_key`), every shard's presence and size, and
    with `verify` every shard's SHA-256 digest.
    """
    if manifest is None:
        return "not prepared yet (no manifest)"
    if manifest.get("key") != key:
        changed = [k for k in key if manifest.get("key", {}).get(k) != key[k]]
        return f"prepared from other data or settings ({', '.join(changed)} changed)"
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            path = os.path.join(prepared_dir, shard["file"])
            if not os.path.exists(path):
                return f"{path} is missing"
            if os.path.getsize(path) != shard["bytes"]:
                return f"{path} has {os.path.getsize(path)} bytes, the manifest says {shard['bytes']}"
            if verify and _sha256(path) != shard["sha256"]:
                return f"{path}: content differs from the manifest (SHA-256)"
    return None


@contextlib.contextmanager
def _locked(prepared_dir):
    os.makedirs(prepared_dir, exist_ok=True)
    with open(os.path.join(prepared_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _converted(samples, conversion, workers):
    """`native.convert` of every sample, in order, on `workers` threads.

    Threads, not processes: decoding and encoding (PIL, OpenCV) and numpy's array loops release the
    GIL, and worker processes would have to be spawned (forking a process that runs TensorFlow is
    unsafe) and would re-import the calling program, TensorFlow included.
    """
    if workers <= 1:
        for sample in samples:
            yield native.convert(sample, conversion)
        return
    with multiprocessing.pool.ThreadPool(workers) as pool:
        yield from pool.imap(lambda sample: native.convert(sample, conversion), samples,
                             chunksize=4)


class _PixelsSeen:
    """The pixel kind of a dataset's images (`native.Pixels`), checked equal for every image, and
    the sums that give the training images' per-band mean and standard deviation."""

    def __init__(self):
        self.pixels, self.first, self.moments, self.count = None, None, None, 0

    def add(self, ref, prepared, sums=True):
        if self.pixels is None:
            self.pixels, self.first = prepared.pixels, ref
        elif prepared.pixels != self.pixels:
            raise DataError(f"{ref}: {prepared.pixels}, but {self.first} has {self.pixels}; every "
                            "image of a dataset needs the same bands and bit depth")
        if sums and prepared.band_moments is not None:
            self.moments = prepared.band_moments + (0 if self.moments is None else self.moments)
            self.count += prepared.height * prepared.width

    def manifest_entry(self):
        """{'bands', 'dtype', 'mean', 'std'}; mean and std None for photos (ImageNet's)."""
        pixels = self.pixels or native.PHOTO
        entry = {"bands": pixels.bands, "dtype": pixels.dtype, "mean": None, "std": None}
        if not pixels.photo and self.count:
            mean = self.moments[0] / self.count
            std = np.sqrt(np.maximum(self.moments[1] / self.count - np.square(mean), 0.0))
            # A band of one value everywhere is centred and left unscaled.
            entry["mean"] = mean.tolist()
            entry["std"] = np.where(std > 1e-6, std, 1.0).tolist()
        return entry


def _write_split(prepared_dir, split, samples, conversion, workers, out, pixels_seen):
    """Writes one split's shards; returns its manifest entry. The images' pixels go to
    `pixels_seen` (their moments for the training split only)."""
    shards, records = [], {"shard": [], "offset": [], "length": []}
    names, labelled, sizes, counts = [], [], [], []
    writer, tmp_path, shard_bytes = None, None, 0
    progress = Progress(split, len(samples), "images", out)

    def close_shard():
        writer.close()
        final = os.path.join(prepared_dir, f"{split}-{len(shards):05d}.tfrecord")
        os.replace(tmp_path, final)
        shards.append({"file": os.path.basename(final), "bytes": os.path.getsize(final),
                       "sha256": _sha256(final)})

    try:
        for done, prepared in enumerate(_converted(samples, conversion, workers), 1):
            pixels_seen.add(samples[done - 1].image, prepared, sums=split == "train")
            if writer is None:
                tmp_path = os.path.join(prepared_dir,
                                        f"{split}-{len(shards):05d}.tfrecord.tmp-{os.getpid()}")
                writer, shard_bytes = tf.io.TFRecordWriter(tmp_path), 0
            data = serialise(prepared)
            writer.write(data)
            records["shard"].append(len(shards))
            records["offset"].append(shard_bytes)
            records["length"].append(len(data))
            shard_bytes += len(data) + _RECORD_OVERHEAD
            names.append(prepared.name)
            labelled.append(bool(prepared.label))
            sizes.append([prepared.height, prepared.width])
            nonzero = np.flatnonzero(prepared.label_counts)
            counts.append({int(v): int(prepared.label_counts[v]) for v in nonzero})
            if shard_bytes >= SHARD_BYTES:
                close_shard()
                writer = None
            progress.update(done)
        if writer is not None:
            close_shard()
    except BaseException as error:
        # Bad data, a full disk or an interrupt: leave no half-written shard behind.
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp_path)
        if isinstance(error, (OSError, tf.errors.OpError)):
            detail = getattr(error, "strerror", None) or getattr(error, "message", None) or error
            raise DataError(f"{tmp_path or prepared_dir}: cannot write the prepared records "
                            f"({str(detail).strip().splitlines()[0]})") from None
        raise
    return {"names": names, "labelled": labelled, "sizes": sizes, "label_counts": counts,
            "shards": shards, "records": records}


def prepare(layout, prepared_dir, workers=None, verify=False, out=sys.stderr):
    """Prepares `layout` into `prepared_dir` unless a valid preparation is there; returns the manifest.

    Raises `DataError` (one line, naming the file) for unreadable or inconsistent data.
    """
    key = layout_key(layout)
    workers = os.cpu_count() if workers is None else workers
    try:
        return _prepare_locked(layout, prepared_dir, key, workers, verify, out)
    except BaseException:
        # A preparation that failed before writing anything leaves no folder holding only its lock.
        if os.path.isdir(prepared_dir) and set(os.listdir(prepared_dir)) <= {".lock"}:
            shutil.rmtree(prepared_dir, ignore_errors=True)
        raise


def _prepare_locked(layout, prepared_dir, key, workers, verify, out):
    with _locked(prepared_dir):
        manifest = read_manifest(prepared_dir)
        problem = check_prepared(prepared_dir, manifest, key, verify)
        if problem is None:
            return manifest
        total = sum(len(s) for s in layout.splits.values())
        print(f"preparing {layout.dataset} ({total} images) into {prepared_dir}: {problem}",
              file=out, flush=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(prepared_dir, MANIFEST))
        for name in os.listdir(prepared_dir):
            if ".tfrecord" in name:
                os.remove(os.path.join(prepared_dir, name))
        start = time.perf_counter()
        pixels_seen = _PixelsSeen()
        splits = {split: _write_split(prepared_dir, split, samples, layout.conversion, workers, out,
                                      pixels_seen)
                  for split, samples in layout.splits.items()}
        _check_classes_present(layout, splits["train"])
        class_names = layout.class_names or _classes_from_labels(layout, splits, out)
        manifest = {"key": key, "dataset": layout.dataset, "class_names": list(class_names),
                    "listed_order": layout.listed_order,
                    "fixed_image_size": layout.fixed_image_size,
                    "pixels": pixels_seen.manifest_entry(), "splits": splits}
        atomic_write_bytes(os.path.join(prepared_dir, MANIFEST), json.dumps(manifest).encode())
        print(f"prepared {layout.dataset} in {time.perf_counter() - start:.0f}s", file=out, flush=True)
        return manifest


def _class_ids_present(splits):
    """The sorted class ids (255, ignore, left out) that the masks of `splits` hold."""
    return sorted({value for split in splits for counts in split["label_counts"]
                   for value in counts if value != native.IGNORE_LABEL})


def _check_classes_present(layout, train):
    """DataError, one line, when the training masks cannot teach two classes: one class id besides
    255 (ignore), as black-and-white 0/255 masks read as ids give; or, when the masks define the
    classes, only 0 and one other value (0/128 masks would make 127 classes that never occur)."""
    present = _class_ids_present([train])
    if not present:
        return                  # _classes_from_labels or the labelled-set check names this
    masks = os.path.dirname(next(s.label for s in layout.splits["train"] if s.label).path)
    with_ignore = [s.label for s, counts in zip(layout.splits["train"], train["label_counts"])
                   if native.IGNORE_LABEL in counts]
    mapping = layout.conversion.mask_values
    if len(present) == 1:
        value = mapping[present[0]] if mapping else present[0]
        if with_ignore and not mapping:
            raise DataError(
                f"{masks}: the masks hold the values {value} and 255 only, and 255 means ignore: no "
                f"pixel of a second class (e.g. {with_ignore[0]}). If 255 marks your objects (a "
                f"black-and-white mask), add --mask_values={value},255")
        raise DataError(f"{masks}: every labelled pixel of the masks is class {present[0]} "
                        f"(value {value}); segmentation needs pixels of 2 or more classes")
    if layout.class_names is None and not mapping and len(present) == 2 and present[0] == 0 \
            and present[1] > 1:
        raise DataError(
            f"{masks}: the masks hold only the values 0 and {present[1]}, read as class ids they "
            f"would make {present[1] + 1} classes. For two classes add --mask_values=0,{present[1]}; "
            "if the ids in between are classes too, give classes.txt or --num_classes")


def _classes_from_labels(layout, splits, out):
    """Class names for a dataset whose labels define the classes: ids 0..max seen. Says so, and
    warns when many of those ids never occur (a stray mask value would make classes of them)."""
    present = _class_ids_present(splits.values())
    if not present:
        raise DataError(f"{layout.dataset}: the masks hold no class ids (only 255, ignore)")
    count = present[-1] + 1
    print(f"{layout.dataset}: {count} classes, read from the masks (ids 0-{present[-1]}; give "
          "classes.txt, palette.txt or --num_classes to have the masks checked against a count)",
          file=out, flush=True)
    if len(present) < count:
        shown = ", ".join(map(str, present[:12])) + (", ..." if len(present) > 12 else "")
        print(f"warning: only {len(present)} of these {count} ids occur in the masks ({shown}): "
              "if some are stray values, the run learns classes that do not exist",
              file=out, flush=True)
    return [f"class_{k}" for k in range(count)]


@dataclasses.dataclass
class PreparedSplit:
    """One split of a manifest, with numpy views of its record table."""
    names: list
    labelled: np.ndarray
    label_counts: list
    shard_paths: list
    shard: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    sizes: np.ndarray       # [records, 2] height, width

    @classmethod
    def from_manifest(cls, prepared_dir, entry):
        return cls(names=entry["names"], labelled=np.array(entry["labelled"], bool),
                   label_counts=entry["label_counts"],
                   shard_paths=[os.path.join(prepared_dir, s["file"]) for s in entry["shards"]],
                   shard=np.array(entry["records"]["shard"], np.int64),
                   offset=np.array(entry["records"]["offset"], np.int64),
                   length=np.array(entry["records"]["length"], np.int64),
                   sizes=np.array(entry["sizes"], np.int64).reshape(-1, 2))

    def __len__(self):
        return len(self.names)

    def class_counts(self, num_classes):
        """[records, num_classes] labelled pixels of each class (255 left out)."""
        counts = np.zeros((len(self), num_classes), np.int64)
        for i, record in enumerate(self.label_counts):
            for value, count in record.items():
                if int(value) < num_classes:
                    counts[i, int(value)] = count
        return counts


class RecordReader:
    """Random access to the serialised records of one prepared split (decode with `decode_example`)."""

    def __init__(self, split):
        self.split = split
        self._files = {}    # shard number -> open file descriptor, per process

    def read_serialised(self, index):
        """The serialised Example of record `index` (a Python int), by one positioned read."""
        shard = int(self.split.shard[index])
        if shard not in self._files:
            self._files[shard] = os.open(self.split.shard_paths[shard], os.O_RDONLY)
        length = int(self.split.length[index])
        data = os.pread(self._files[shard], length, int(self.split.offset[index]) + _RECORD_HEADER)
        if len(data) != length:
            raise DataError(f"{self.split.shard_paths[shard]}: truncated (record {index}); prepare "
                            "the dataset again")
        return data

    def __del__(self):
        for fd in self._files.values():
            with contextlib.suppress(OSError):
                os.close(fd)


def decode_image(data):
    """uint8 RGB [H, W, 3] from JPEG, PNG, BMP or GIF (first frame) bytes: the in-graph decoder of
    training and of the exported `encoded` signature. It gives the pixels PIL gives, which predict
    and evaluate read files with: JPEGs are decoded with the accurate integer DCT, as PIL does
    (TensorFlow's default, the fast DCT, differs by a few levels), and EXIF orientation is ignored
    by both (the pixels as stored)."""
    image = tf.cond(tf.io.is_jpeg(data),
                    lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
                    lambda: tf.io.decode_image(data, channels=3, expand_animations=False))
    image.set_shape([None, None, 3])
    return image


def decode_example(serialised, pixels=native.PHOTO):
    """(image [H, W, bands], label uint8 [H, W]) of a serialised prepared Example whose images hold
    `pixels` (a `native.Pixels`); a sample stored without a label gets 255 (ignore) everywhere."""
    features = tf.io.parse_single_example(serialised, _FEATURES)
    shape = tf.stack([features["height"], features["width"]])
    if pixels.photo:
        image = decode_image(features["image"])
    else:
        raw = tf.io.decode_raw(tf.io.decode_compressed(features["image"], "ZLIB"),
                               tf.as_dtype(pixels.dtype), little_endian=True)
        image = tf.reshape(raw, tf.concat([shape, [pixels.bands]], 0))
        image.set_shape([None, None, pixels.bands])
    label = tf.cond(tf.strings.length(features["label"]) > 0,
                    lambda: tf.io.decode_png(features["label"], channels=1)[..., 0],
                    lambda: tf.fill(shape, tf.constant(native.IGNORE_LABEL, tf.uint8)))
    label.set_shape([None, None])
    return image, label
