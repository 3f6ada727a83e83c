"""The datasets' native layouts: which files make the training, validation and test sets.

Each `*_layout(data_dir)` reads only file names (fast, no image is opened) and returns a `Layout`: the
raw samples of each split, the classes, and the `Conversion` the preparation applies. A missing folder,
list or file raises `DataError` naming it. No TensorFlow here (see native.py).

Labelled subsets: Pascal VOC augmented takes the first `--n_sup` names of the shipped
Mittal split; a folder dataset with `labelled.txt` the first of its lines; every other dataset the
first `--n_sup` of `RandomState(--split_seed).permutation` over its training names in sorted order,
which picks the authors' subsets for their seeds.
"""
import dataclasses
import io
import os
import zipfile

from semiseg_tf.data import native
from semiseg_tf.data.native import DataError, FileRef, RawSample
from semiseg_tf.files import write_in_folder

SPLITS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "splits")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclasses.dataclass
class Layout:
    """What one dataset holds, as found in its folder.

    splits: {"train": [RawSample], "val": [...], optionally "test": [...]}.
    class_names: tuple, or None when the classes are read from the labels (folder datasets).
    listed_order: the training list is already in labelled-subset order (a split file), instead of
      being drawn with `RandomState(split_seed)`.
    fixed_image_size: (height, width) shared by every prepared image, or None.
    notes: lines to tell the user about the data as found (e.g. a palette file that is not used).
    """
    dataset: str
    splits: dict
    conversion: native.Conversion
    class_names: tuple = None
    listed_order: bool = False
    fixed_image_size: tuple = None
    notes: tuple = ()


class Tree:
    """The files under a dataset folder, and inside the official zips found in it, by relative path
    ('/'-separated). A file present both extracted and zipped is read from the folder."""

    def __init__(self, data_dir, zip_names=()):
        self.data_dir = data_dir
        self.files = {}
        for name in zip_names:
            archive = os.path.join(data_dir, name)
            if os.path.isfile(archive):
                try:
                    with zipfile.ZipFile(archive) as z:
                        members = z.namelist()
                except (OSError, zipfile.BadZipFile) as error:
                    raise DataError(f"{archive}: not a readable zip archive ({error})") from None
                for member in members:
                    if not member.endswith("/"):
                        self.files[member] = FileRef(archive, member)
        for root, _, names in os.walk(data_dir):
            rel_root = os.path.relpath(root, data_dir).replace(os.sep, "/")
            for name in names:
                rel = name if rel_root == "." else f"{rel_root}/{name}"
                self.files[rel] = FileRef(os.path.join(root, name))

    def under(self, folder, suffix=""):
        """{path relative to `folder`: FileRef} of the files under `folder` ending with `suffix`."""
        prefix = folder.rstrip("/") + "/"
        return {path[len(prefix):]: ref for path, ref in self.files.items()
                if path.startswith(prefix) and path.endswith(suffix)}

    def has_folder(self, folder):
        prefix = folder.rstrip("/") + "/"
        return any(path.startswith(prefix) for path in self.files)

    def get(self, path):
        return self.files.get(path)


def _require_dir(data_dir, flag="data_dir"):
    if not data_dir:
        raise DataError(f"--{flag} is required for this dataset: the folder that holds it")
    if not os.path.isdir(data_dir):
        raise DataError(f"--{flag}={data_dir}: no such folder")


def _require_folder(tree, folder, what):
    if not tree.has_folder(folder):
        path = os.path.join(tree.data_dir, folder)
        state = "holds no files" if os.path.isdir(path) else "missing"
        raise DataError(f"{path}: {state} ({what})")


def read_name_list(path):
    """Names, one per line (blank lines and surrounding spaces ignored)."""
    try:
        with open(path) as f:
            return [line.strip() for line in f if line.strip()]
    except OSError as error:
        raise DataError(f"{path}: cannot read the list ({error.strerror})") from None


def _paired(tree, names, image_path, label_path, list_path):
    """RawSamples of `names`, image/label paths from format strings; DataError on the first missing."""
    samples = []
    for name in names:
        image, label = tree.get(image_path.format(name)), tree.get(label_path.format(name))
        for ref, path in ((image, image_path), (label, label_path)):
            if ref is None:
                raise DataError(f"{os.path.join(tree.data_dir, path.format(name))}: missing "
                                f"(listed in {list_path})")
        samples.append(RawSample(name, image, label))
    return samples


def _with_labels(tree, images, label_path):
    """RawSamples of `images` ({name: FileRef}) in sorted name order, each with the label file at
    `label_path(name)` (relative to the data folder); DataError naming the first one missing."""
    samples = []
    for name in sorted(images):
        label = tree.get(label_path(name))
        if label is None:
            raise DataError(f"{os.path.join(tree.data_dir, label_path(name))}: missing (the label of "
                            f"{images[name]})")
        samples.append(RawSample(name, images[name], label))
    return samples


# --- Pascal VOC 2012 ----------------------------------------------------------------------------------
PASCAL_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
                  "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
                  "sheep", "sofa", "train", "tvmonitor")


def pascal_layout(data_dir, augmented=True):
    """`data_dir` is the VOC2012 folder (VOCdevkit/VOC2012).

    augmented: `SegmentationClassAug/` labels (SBD, 10,582 training images in the order of the shipped
    Mittal split, so `--n_sup=k` labels its first k); else `SegmentationClass/` with the official
    `ImageSets/Segmentation/train.txt` (1,464). Validation: the 1,449 official images either way.
    """
    _require_dir(data_dir)
    tree = Tree(data_dir)
    labels = "SegmentationClassAug" if augmented else "SegmentationClass"
    _require_folder(tree, "JPEGImages", "the VOC2012 images; --data_dir is the VOC2012 folder")
    _require_folder(tree, labels, "the SBD-augmented labels, e.g. from SegmentationClassAug.zip"
                    if augmented else "the VOC2012 segmentation labels")
    if augmented:
        train_list = os.path.join(SPLITS_DIR, "pascal_aug", "split_0.txt")
        val_list = os.path.join(SPLITS_DIR, "pascal_aug", "val.txt")
    else:
        train_list = os.path.join(data_dir, "ImageSets", "Segmentation", "train.txt")
        val_list = os.path.join(data_dir, "ImageSets", "Segmentation", "val.txt")
    splits = {split: _paired(tree, read_name_list(path), "JPEGImages/{}.jpg", labels + "/{}.png", path)
              for split, path in (("train", train_list), ("val", val_list))}
    return Layout("pascal_aug" if augmented else "pascal", splits,
                  native.Conversion(num_classes=len(PASCAL_CLASSES)), PASCAL_CLASSES,
                  listed_order=augmented)


# --- Cityscapes ---------------------------------------------------------------------------------------
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                      "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
                      "bus", "train", "motorcycle", "bicycle")
# gtFine label ids of the 19 evaluated classes, in train-id order; every other id is void.
CITYSCAPES_TRAIN_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
CITYSCAPES_LUT = tuple(CITYSCAPES_TRAIN_IDS.index(i) if i in CITYSCAPES_TRAIN_IDS
                       else native.IGNORE_LABEL for i in range(256))
CITYSCAPES_ZIPS = ("leftImg8bit_trainvaltest.zip", "gtFine_trainvaltest.zip")
# The official colours of the 19 classes (cityscapesscripts.helpers.labels), in train-id order.
CITYSCAPES_PALETTE = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
                      (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
                      (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
                      (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32))


def cityscapes_layout(data_dir):
    """`data_dir` holds `leftImg8bit/` and `gtFine/` (or the two official zips). Prepared at half
    resolution, 1024x512 (2x2 block mean; 2x2 majority vote of the label ids, then train ids)."""
    _require_dir(data_dir)
    tree = Tree(data_dir, CITYSCAPES_ZIPS)
    _require_folder(tree, "leftImg8bit", f"the images: leftImg8bit/ or {CITYSCAPES_ZIPS[0]}")
    _require_folder(tree, "gtFine", f"the labels: gtFine/ or {CITYSCAPES_ZIPS[1]}")
    splits = {}
    for split in ("train", "val"):
        images = tree.under(f"leftImg8bit/{split}", "_leftImg8bit.png")
        if not images:
            raise DataError(f"{os.path.join(data_dir, 'leftImg8bit', split)}: no *_leftImg8bit.png "
                            "images")
        names = {rel[:-len("_leftImg8bit.png")]: ref for rel, ref in images.items()}
        splits[split] = _with_labels(tree, names,
                                     lambda name: f"gtFine/{split}/{name}_gtFine_labelIds.png")
    return Layout("cityscapes", splits,
                  native.Conversion(num_classes=len(CITYSCAPES_CLASSES), half_resolution=True,
                                    label_lut=CITYSCAPES_LUT),
                  CITYSCAPES_CLASSES)


# --- ISIC 2017 ----------------------------------------------------------------------------------------
ISIC_CLASSES = ("background", "lesion")
ISIC_SIZE = (248, 248)
# Masks are 0/255, resized with area interpolation; lesion where the result is >= 127.
ISIC_LUT = tuple(int(v >= 127) for v in range(256))


def isic2017_layout(data_dir):
    """`data_dir` holds the official training and validation folders or zips
    (ISIC-2017_{Training,Validation}_Data and _Part1_GroundTruth). Prepared at 248x248 (aspect ratio
    not kept, as the paper prefers)."""
    _require_dir(data_dir)
    folders = {split: (f"ISIC-2017_{part}_Data", f"ISIC-2017_{part}_Part1_GroundTruth")
               for split, part in (("train", "Training"), ("val", "Validation"))}
    tree = Tree(data_dir, [f + ".zip" for pair in folders.values() for f in pair])
    splits = {}
    for split, (images_dir, masks_dir) in folders.items():
        _require_folder(tree, images_dir, f"the official images, folder or {images_dir}.zip")
        _require_folder(tree, masks_dir, f"the official lesion masks, folder or {masks_dir}.zip")
        images = {rel[:-4]: ref for rel, ref in tree.under(images_dir, ".jpg").items()}
        splits[split] = _with_labels(tree, images,
                                     lambda name: f"{masks_dir}/{name}_segmentation.png")
    return Layout("isic2017", splits,
                  native.Conversion(num_classes=2, resize_to=ISIC_SIZE, label_lut=ISIC_LUT),
                  ISIC_CLASSES, fixed_image_size=ISIC_SIZE)


# --- CamVid (SegNet layout) ---------------------------------------------------------------------------
CAMVID_CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car",
                  "pedestrian", "bicyclist")
CAMVID_LUT = tuple(native.IGNORE_LABEL if v == 11 else v for v in range(256))  # 11: void
# SegNet's CamVid colours (its tutorial's label colouring), in class order.
CAMVID_PALETTE = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
                  (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
                  (0, 128, 192))


def camvid_layout(data_dir):
    """`data_dir` holds SegNet's train/, trainannot/, val/, valannot/, test/, testannot/ (or
    CamVidData.zip with them). Labels 0-10; 11 (void) becomes 255."""
    _require_dir(data_dir)
    tree = Tree(data_dir, ("CamVidData.zip",))
    # The zip may hold the folders under a top-level CamVid/.
    base = "CamVid/" if not tree.has_folder("train") and tree.has_folder("CamVid/train") else ""
    splits = {}
    for split in ("train", "val", "test"):
        _require_folder(tree, base + split, f"CamVid {split} images (SegNet layout)")
        _require_folder(tree, base + split + "annot", f"CamVid {split} labels (SegNet layout)")
        images = {rel[:-4]: ref for rel, ref in tree.under(base + split, ".png").items()}
        splits[split] = _with_labels(tree, images, lambda name: f"{base}{split}annot/{name}.png")
    return Layout("camvid", splits,
                  native.Conversion(num_classes=len(CAMVID_CLASSES), label_lut=CAMVID_LUT),
                  CAMVID_CLASSES, fixed_image_size=None)


# --- a user's own folder ------------------------------------------------------------------------------
def _stems(tree, folder):
    files = {}
    for rel, ref in tree.under(folder).items():
        stem, ext = os.path.splitext(rel)
        if ext.lower() in IMAGE_EXTENSIONS:
            if stem in files:
                raise DataError(f"{os.path.join(tree.data_dir, folder, rel)}: two files for "
                                f"'{stem}' ({files[stem]})")
            files[stem] = ref
    return files


def dataset_palette(dataset, data_dir=None):
    """The class colours a dataset is drawn in: Cityscapes' and CamVid's own, a folder's palette.txt;
    None for the others (which use the Pascal VOC colour map, visualise.default_palette)."""
    if dataset == "cityscapes":
        return CITYSCAPES_PALETTE
    if dataset == "camvid":
        return CAMVID_PALETTE
    path = os.path.join(data_dir, "palette.txt") if dataset == "folder" and data_dir else None
    return _read_palette(path) if path and os.path.isfile(path) else None


def write_class_files(folder, class_names, palette):
    """classes.txt and palette.txt of a folder dataset (`folder_layout` reads them), written
    atomically into `folder` (created where missing)."""
    write_in_folder(os.path.join(folder, "classes.txt"),
                    "".join(f"{name}\n" for name in class_names).encode())
    write_in_folder(os.path.join(folder, "palette.txt"),
                    "".join(f"{r} {g} {b}\n" for r, g, b in palette).encode())


def _read_palette(path):
    palette = []
    for number, line in enumerate(read_name_list(path), 1):
        try:
            colour = tuple(int(v) for v in line.replace(",", " ").split())
        except ValueError:
            colour = ()
        if len(colour) != 3 or not all(0 <= v <= 255 for v in colour):
            raise DataError(f"{path}: line {number} {line!r} is not 'R G B' with values 0-255")
        palette.append(colour)
    return tuple(palette)


def folder_layout(data_dir, num_classes=0, mask_values=()):
    """A user's own data.

    data_dir/
      images/        any of .jpg .png .bmp .gif (first frame) .tif .webp; sub-folders allowed
      masks/         label PNGs with the same relative names (stems); an image without one is
                     used as unlabelled only
      labelled.txt   optional: the names (stems) that may be labelled, in order; --n_sup takes the
                     first ones. Without it, every image with a mask, drawn by --split_seed.
      val/images/, val/masks/   optional validation set (else hold some out with --n_val)
      classes.txt    optional: class names, one per line (their count is the number of classes)
      palette.txt    optional: 'R G B' per class, for masks stored as colours
    Masks hold class ids 0..C-1 and 255 for pixels to ignore, or, with `mask_values`, the listed
    pixel values for classes 0, 1, ... (0/255 black-and-white masks: (0, 255)). The number of classes
    comes from classes.txt, palette.txt, `num_classes`, `mask_values`, or else the largest id found
    in the masks plus one.
    """
    _require_dir(data_dir)
    tree = Tree(data_dir)
    _require_folder(tree, "images", "the training images")
    classes_path, palette_path = (os.path.join(data_dir, n) for n in ("classes.txt", "palette.txt"))
    class_names = tuple(read_name_list(classes_path)) if os.path.isfile(classes_path) else None
    palette = _read_palette(palette_path) if os.path.isfile(palette_path) else None
    counts = ({len(c) for c in (class_names, palette, mask_values) if c}
              | ({num_classes} if num_classes else set()))
    if len(counts) > 1:
        raise DataError(f"{data_dir}: classes.txt, palette.txt, --num_classes and --mask_values "
                        f"disagree on the number of classes ({', '.join(map(str, sorted(counts)))})")
    if counts and min(counts) < 2:
        raise DataError(f"{classes_path if class_names else data_dir}: declares 1 class; "
                        "segmentation needs 2 or more (e.g. background and object)")
    if counts and class_names is None:
        class_names = tuple(f"class_{k}" for k in range(counts.pop()))
    splits = {"train": _folder_split(tree, "images", "masks", labels_required=False)}
    if not any(s.label for s in splits["train"]):
        raise DataError(f"{os.path.join(data_dir, 'masks')}: no masks for the images in "
                        f"{os.path.join(data_dir, 'images')} (the labelled set would be empty)")
    if tree.has_folder("val/images"):
        splits["val"] = _folder_split(tree, "val/images", "val/masks", labels_required=True)
    listed = os.path.isfile(os.path.join(data_dir, "labelled.txt"))
    if listed:
        splits["train"] = _order_by_list(splits["train"], os.path.join(data_dir, "labelled.txt"))
    notes = _palette_png_notes(palette, splits) if palette else ()
    return Layout("folder", splits,
                  native.Conversion(num_classes=len(class_names) if class_names else None,
                                    palette=palette, mask_values=tuple(mask_values) or None,
                                    bands=True),
                  class_names, listed_order=listed, notes=notes)


def _palette_png_notes(palette, splits):
    """A note when the masks are palette PNGs whose own colours differ from palette.txt's: their
    pixel values are read as the class ids, and palette.txt only colours the pictures."""
    from PIL import Image
    mask = next((s.label for split in splits.values() for s in split if s.label), None)
    try:
        with Image.open(io.BytesIO(mask.read())) as image:
            if image.mode != "P":
                return ()
            colours = image.getpalette()[:3 * len(palette)]
    except (OSError, ValueError, AttributeError):
        return ()
    own = [tuple(colours[3 * k:3 * k + 3]) for k in range(len(colours) // 3)]
    differ = [k for k, colour in enumerate(palette) if k < len(own) and own[k] != tuple(colour)]
    if not differ:
        return ()
    return (f"note: {mask} is a palette PNG whose own colours differ from palette.txt's (class "
            f"{differ[0]}: {own[differ[0]]} in the PNG, {tuple(palette[differ[0]])} in "
            "palette.txt): masks of this kind are read by their pixel values, the class ids, and "
            "palette.txt only colours the run's pictures",)


def _folder_split(tree, images_dir, masks_dir, labels_required):
    images, masks = _stems(tree, images_dir), _stems(tree, masks_dir)
    for stem in sorted(set(masks) - set(images)):
        raise DataError(f"{masks[stem]}: a mask with no image of the same name in "
                        f"{os.path.join(tree.data_dir, images_dir)}")
    if labels_required:
        for stem in sorted(set(images) - set(masks)):
            raise DataError(f"{images[stem]}: a validation image with no mask in "
                            f"{os.path.join(tree.data_dir, masks_dir)}")
    return [RawSample(stem, images[stem], masks.get(stem)) for stem in sorted(images)]


def _order_by_list(samples, list_path):
    """Training samples with the listed (labelled) names first, in the list's order; the others,
    unlabelled only, after them."""
    by_name = {s.name: s for s in samples}
    listed = read_name_list(list_path)
    if not listed:
        raise DataError(f"{list_path}: empty (the labelled set would be empty)")
    for name in listed:
        if name not in by_name:
            raise DataError(f"{list_path}: '{name}' is not an image in images/")
        if by_name[name].label is None:
            raise DataError(f"{list_path}: '{name}' has no mask in masks/")
    chosen = set(listed)
    if len(chosen) != len(listed):
        raise DataError(f"{list_path}: a name is listed twice")
    rest = [dataclasses.replace(s, label=None) for s in samples if s.name not in chosen]
    return [by_name[n] for n in listed] + rest


LAYOUTS = {
    "pascal_aug": lambda data_dir, **_: pascal_layout(data_dir, augmented=True),
    "pascal": lambda data_dir, **_: pascal_layout(data_dir, augmented=False),
    "cityscapes": lambda data_dir, **_: cityscapes_layout(data_dir),
    "isic2017": lambda data_dir, **_: isic2017_layout(data_dir),
    "camvid": lambda data_dir, **_: camvid_layout(data_dir),
    "folder": folder_layout,
}
