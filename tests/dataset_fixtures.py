"""Tiny datasets written as real JPEG/PNG files in each dataset's native layout, for the tests.

Images are random colour noise of small, varied sizes; labels are random rectangles of class ids on a
background, so every class count and size check has something to find. Every function returns what
it wrote (names per split, and the arrays where a test needs an oracle).
"""
import io
import os
import zipfile

import numpy as np
from PIL import Image

from semiseg_tf.data import layouts


def _image(rng, height, width):
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _label(rng, height, width, values, ignore_border=False):
    label = np.full((height, width), values[0], np.uint8)
    for _ in range(3):
        y, x = rng.integers(0, height), rng.integers(0, width)
        label[y:y + height // 3 + 1, x:x + width // 3 + 1] = rng.choice(values)
    if ignore_border:
        label[0, :] = 255
    return label


def _save(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if path.endswith(".jpg"):
        Image.fromarray(array).save(path, quality=90)
    else:
        Image.fromarray(array).save(path)


def _zip_folder(root, folder, archive_name):
    """Moves `root/folder` into `root/archive_name`, members named `folder/...`."""
    archive = os.path.join(root, archive_name)
    with zipfile.ZipFile(archive, "w") as z:
        for base, _, names in os.walk(os.path.join(root, folder)):
            for name in sorted(names):
                path = os.path.join(base, name)
                z.write(path, os.path.relpath(path, root).replace(os.sep, "/"))
    _remove_tree(os.path.join(root, folder))


def _remove_tree(path):
    for base, dirs, names in os.walk(path, topdown=False):
        for name in names:
            os.remove(os.path.join(base, name))
        for name in dirs:
            os.rmdir(os.path.join(base, name))
    os.rmdir(path)


VOC_PALETTE = [v for k in range(256) for v in ((k * 37) % 256, (k * 91) % 256, (k * 53) % 256)]


def write_pascal(root, augmented=True, seed=0):
    """VOC2012 layout. Augmented: every name of the shipped split and validation list (12,031 tiny
    images, so the shipped split itself is exercised); plain: 12 training and 5 validation names in
    ImageSets/Segmentation, labels as palette PNGs like VOC's own."""
    rng = np.random.default_rng(seed)
    if augmented:
        train = layouts.read_name_list(os.path.join(layouts.SPLITS_DIR, "pascal_aug", "split_0.txt"))
        val = layouts.read_name_list(os.path.join(layouts.SPLITS_DIR, "pascal_aug", "val.txt"))
    else:
        train = [f"2007_{k:06d}" for k in range(12)]
        val = [f"2008_{k:06d}" for k in range(5)]
        os.makedirs(os.path.join(root, "ImageSets", "Segmentation"))
        for split, names in (("train", train), ("val", val)):
            with open(os.path.join(root, "ImageSets", "Segmentation", f"{split}.txt"), "w") as f:
                f.write("\n".join(names) + "\n")
    labels_dir = "SegmentationClassAug" if augmented else "SegmentationClass"
    os.makedirs(os.path.join(root, "JPEGImages"))
    os.makedirs(os.path.join(root, labels_dir))
    for name in train + val:
        height, width = (int(v) for v in rng.integers(12, 28, 2))
        Image.fromarray(_image(rng, height, width)).save(
            os.path.join(root, "JPEGImages", f"{name}.jpg"), quality=90)
        label = _label(rng, height, width, list(range(21)), ignore_border=True)
        path = os.path.join(root, labels_dir, f"{name}.png")
        if augmented:
            Image.fromarray(label).save(path)
        else:
            image = Image.frombytes("P", (width, height), label.tobytes())
            image.putpalette(VOC_PALETTE)
            image.save(path)
    return {"train": train, "val": val}


def write_cityscapes(root, per_split=(("train", ("aachen", "bochum"), 5), ("val", ("lindau",), 3)),
                     height=32, width=64, zipped=False, seed=0):
    """leftImg8bit/ and gtFine/ with *_gtFine_labelIds.png holding all ids 0-33; optionally zipped
    as the official archives. Returns {split: {name: (image, label_ids)}}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, cities, count in per_split:
        written[split] = {}
        for city in cities:
            for k in range(count):
                stem = f"{city}_{k:06d}_000019"
                image = _image(rng, height, width)
                ids = rng.integers(0, 34, (height, width)).astype(np.uint8)
                ids[: height // 2, : width // 2] = rng.integers(0, 34)   # a large uniform region
                _save(os.path.join(root, "leftImg8bit", split, city, f"{stem}_leftImg8bit.png"), image)
                _save(os.path.join(root, "gtFine", split, city, f"{stem}_gtFine_labelIds.png"), ids)
                # Other gtFine files, which the layout must ignore.
                _save(os.path.join(root, "gtFine", split, city, f"{stem}_gtFine_color.png"), image)
                written[split][f"{city}/{stem}"] = (image, ids)
    if zipped:
        _zip_folder(root, "leftImg8bit", "leftImg8bit_trainvaltest.zip")
        _zip_folder(root, "gtFine", "gtFine_trainvaltest.zip")
    return written


def write_isic(root, n_train=12, n_val=4, size=(496, 496), zipped=False, seed=0):
    """The official ISIC 2017 folders (or zips): ISIC_*.jpg with *_superpixels.png beside them, and
    *_segmentation.png masks of 0/255. Returns {split: {name: mask}}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, part, count, first in (("train", "Training", n_train, 0), ("val", "Validation", n_val, 9000)):
        images_dir, masks_dir = f"ISIC-2017_{part}_Data", f"ISIC-2017_{part}_Part1_GroundTruth"
        written[split] = {}
        for k in range(count):
            name = f"ISIC_{first + k:07d}"
            _save(os.path.join(root, images_dir, f"{name}.jpg"), _image(rng, *size))
            _save(os.path.join(root, images_dir, f"{name}_superpixels.png"), _image(rng, *size))
            mask = (_label(rng, size[0], size[1], [0, 1]) * 255).astype(np.uint8)
            # Isolated pixels, so that the area resize produces partial values around the threshold.
            mask[rng.random(size) < 0.3] ^= 255
            _save(os.path.join(root, masks_dir, f"{name}_segmentation.png"), mask)
            written[split][name] = mask
        if zipped:
            _zip_folder(root, images_dir, images_dir + ".zip")
            _zip_folder(root, masks_dir, masks_dir + ".zip")
    return written


def write_camvid(root, counts=(("train", 6), ("val", 3), ("test", 2)), height=24, width=32, seed=0):
    """SegNet's CamVid layout: labels 0-10 and 11 (void)."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, count in counts:
        written[split] = {}
        for k in range(count):
            name = f"0001TP_{k:06d}"
            label = _label(rng, height, width, list(range(11)))
            label[-1, :5] = 11      # void
            _save(os.path.join(root, split, f"{name}.png"), _image(rng, height, width))
            _save(os.path.join(root, split + "annot", f"{name}.png"), label)
            written[split][name] = label
    return written


def write_folder(root, n_labelled=6, n_unlabelled=3, n_val=3, num_classes=3, height=24, width=32,
                 seed=0, palette=None):
    """A user's folder: images/ (JPEG and PNG), masks/ for the first `n_labelled`, val/. With
    `palette` (a list of RGB triples) masks are stored as colours and palette.txt is written."""
    rng = np.random.default_rng(seed)

    def mask_file(path, label):
        if palette is None:
            _save(path, label)
        else:
            _save(path, np.array(palette, np.uint8)[label])

    names = {"train": [], "val": []}
    for k in range(n_labelled + n_unlabelled):
        name = f"img_{k:03d}"
        ext = ".jpg" if k % 2 else ".png"
        _save(os.path.join(root, "images", name + ext), _image(rng, height, width))
        if k < n_labelled:
            mask_file(os.path.join(root, "masks", name + ".png"),
                      _label(rng, height, width, list(range(num_classes))))
        names["train"].append(name)
    for k in range(n_val):
        name = f"val_{k:03d}"
        _save(os.path.join(root, "val", "images", name + ".png"), _image(rng, height, width))
        mask_file(os.path.join(root, "val", "masks", name + ".png"),
                  _label(rng, height, width, list(range(num_classes))))
        names["val"].append(name)
    if palette is not None:
        with open(os.path.join(root, "palette.txt"), "w") as f:
            f.write("\n".join(" ".join(map(str, c)) for c in palette) + "\n")
    return names


def png_bytes(array):
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def write_raster_folder(root, bands, dtype, n_labelled=6, n_unlabelled=2, n_val=2, height=24,
                        width=32, seed=0):
    """A user's folder of rasters: `bands` bands of `dtype` (np.uint8 or np.uint16), as TIFF files
    (one band: 16-bit PNGs, as medical scans often come), half of the TIFFs planar (bands first, as
    GeoTIFF writers often store them). Class 1 where the last band is bright, as water is dark in
    near infrared. Returns {split: {name: image array [H, W, bands]}}."""
    import cv2
    import tifffile
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    written = {"train": {}, "val": {}}
    for split, count, folder in (("train", n_labelled + n_unlabelled, ""), ("val", n_val, "val")):
        for k in range(count):
            name = f"{split}_{k:03d}"
            image = rng.integers(0, top // 4, (height, width, bands), endpoint=True).astype(dtype)
            label = _label(rng, height, width, [0, 1])
            image[..., -1][label == 1] += np.asarray(top // 2, dtype)
            images = os.path.join(root, folder, "images")
            os.makedirs(images, exist_ok=True)
            if bands == 1:
                cv2.imwrite(os.path.join(images, name + ".png"), image[..., 0])
            elif k % 2:
                tifffile.imwrite(os.path.join(images, name + ".tif"), np.moveaxis(image, -1, 0),
                                 photometric="minisblack", planarconfig="separate")
            else:
                tifffile.imwrite(os.path.join(images, name + ".tif"), image,
                                 photometric="minisblack", planarconfig="contig")
            if split == "val" or k < n_labelled:
                _save(os.path.join(root, folder, "masks", name + ".png"), label)
            written[split][name] = image
    return written
