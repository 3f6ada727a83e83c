"""Distances between patches centred on neighbouring pixels (supplement B.1).

  python -m semiseg_tf.paper.analysis.patch_distance --image=photo.png --label=photo_mask.png \
      --patch_sizes=15,225 --out_dir=runs/patch_distance
  python -m semiseg_tf.paper.analysis.patch_distance --dataset=synthetic --index=3 --out_dir=...

For patches A and B of h x w pixels centred on horizontally adjacent pixels, B - A is the patch of the
horizontal difference image, so |B - A|^2 is a box sum of the squared differences: the map of all
such distances is sqrt(box_{h x w} * sum_c (Dx I)^2). The paper's point: this map varies smoothly and
has no valleys along class boundaries, so there is no low-density region between classes for
consistency regularisation to push a boundary into. Outputs, beside each other in --out_dir:
NAME_image.png (the image, class boundaries in magenta when a label is given), NAME_patchS.png (the
average map for patch size S, brighter = farther, boundaries overlaid) and NAME_distances.npz (the
maps, one array per size and direction).
"""
import numpy as np

DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}


def box_sum(values, size):
    """Sums over every `size` = (h, w) window of a 2-D array ('valid' windows), by integral image."""
    h, w = size
    integral = np.pad(np.cumsum(np.cumsum(values, 0), 1), ((1, 0), (1, 0)))
    return integral[h:, w:] - integral[:-h, w:] - integral[h:, :-w] + integral[:-h, :-w]


def neighbour_distance_maps(image, size):
    """{direction: [H, W]} Euclidean distance between the patch centred on each pixel and the patch
    centred on its neighbour in that direction, for an image [H, W, C] (float) and odd patch sizes
    (h, w). The image is mirrored (numpy 'symmetric') beyond its border."""
    image = np.asarray(image, np.float64)
    if image.ndim == 2:
        image = image[..., None]
    h, w = size
    if h % 2 == 0 or w % 2 == 0:
        raise ValueError(f"patch sizes must be odd, got {h}x{w}")
    pad_y, pad_x = h // 2 + 1, w // 2 + 1
    padded = np.pad(image, ((pad_y, pad_y), (pad_x, pad_x), (0, 0)), mode="symmetric")
    height, width = image.shape[:2]
    maps = {}
    for name, (dy, dx) in DIRECTIONS.items():
        shifted = np.roll(padded, (-dy, -dx), axis=(0, 1))
        squared = ((shifted - padded) ** 2).sum(-1)
        # Windows centred on the original pixels: rows pad_y - h//2 ... of the padded array.
        sums = box_sum(squared, size)[1:1 + height, 1:1 + width]
        maps[name] = np.sqrt(np.maximum(sums, 0.0))
    return maps


def average_distance_map(image, size):
    """The mean of the four directions' maps, [H, W]."""
    maps = neighbour_distance_maps(image, size)
    return sum(maps.values()) / len(maps)


def heat(values):
    """A [H, W] map as uint8 RGB, 0 dark blue to the 99th percentile bright yellow (OpenCV viridis)."""
    import cv2
    top = np.percentile(values, 99) or 1.0
    scaled = (np.clip(values / top, 0, 1) * 255).astype(np.uint8)
    return cv2.applyColorMap(scaled, cv2.COLORMAP_VIRIDIS)[..., ::-1]


def _load_sample(args):
    """(name, image uint8 [H, W, 3], label [H, W] or None) from --image/--label or a dataset."""
    import os

    from semiseg_tf.data.native import DataError, FileRef, decode_image, decode_label
    if args.image:
        image = decode_image(FileRef(args.image))[0]
        label = decode_label(FileRef(args.label)) if args.label else None
        if label is not None and label.shape != image.shape[:2]:
            raise DataError(f"{args.label}: label is {label.shape[1]}x{label.shape[0]} px, the image "
                            f"is {image.shape[1]}x{image.shape[0]}")
        return os.path.splitext(os.path.basename(args.image))[0], image, label
    import tensorflow as tf

    from semiseg_tf.paper.analysis.sources import open_source
    source = open_source(args.dataset, args.data_dir, args.prepared_dir,
                         synthetic_num_train=max(args.index + 1, 1))
    if not 0 <= args.index < source.num_train:
        raise DataError(f"--index={args.index}: the {args.dataset} training set has "
                        f"{source.num_train} images")
    image, label = source.read_train(tf.constant(args.index, tf.int64))
    return f"{args.dataset}_{args.index}", image.numpy(), label.numpy()


def main(argv=None):
    import argparse
    import os
    import sys

    from semiseg_tf import visualise
    from semiseg_tf.data.native import DataError
    from semiseg_tf.files import atomic_savez, atomic_write_bytes, png_bytes
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("--image", help="an image file (any format PIL reads)")
    parser.add_argument("--label", help="its label map (class ids, 255 ignored), for the boundaries")
    parser.add_argument("--dataset", help="instead of --image: a dataset of the project "
                        "(synthetic, pascal_aug, cityscapes, ...), training image --index")
    parser.add_argument("--data_dir", help="the dataset's folder (file-based datasets)")
    parser.add_argument("--prepared_dir", help="its prepared records (default as in training)")
    parser.add_argument("--index", type=int, default=0, help="training image index in --dataset")
    parser.add_argument("--patch_sizes", default="15,225", help="odd patch sides, comma-separated")
    parser.add_argument("--out_dir", required=True, help="where the PNGs and the .npz go")
    args = parser.parse_args(argv)
    try:
        sizes = [int(v) for v in args.patch_sizes.split(",")]
        if not sizes or any(s <= 0 or s % 2 == 0 for s in sizes):
            raise ValueError
    except ValueError:
        print(f"error: --patch_sizes={args.patch_sizes}: expected odd positive integers",
              file=sys.stderr)
        return 2
    if bool(args.image) == bool(args.dataset):
        print("error: give either --image (and optionally --label) or --dataset", file=sys.stderr)
        return 2
    try:
        name, image, label = _load_sample(args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    os.makedirs(args.out_dir, exist_ok=True)
    edges = visualise.class_boundaries(label) if label is not None else None

    def save(picture, suffix):
        if edges is not None:
            picture = picture.copy()
            picture[edges] = (255, 0, 255)
        path = os.path.join(args.out_dir, f"{name}_{suffix}.png")
        atomic_write_bytes(path, png_bytes(picture))
        return path

    arrays = {}
    written = [save(np.asarray(image, np.uint8), "image")]
    for size in sizes:
        print(f"patch {size}x{size}: four neighbour directions on {image.shape[1]}x{image.shape[0]}",
              flush=True)
        maps = neighbour_distance_maps(np.asarray(image, np.float64) / 255.0, (size, size))
        for direction, values in maps.items():
            arrays[f"patch{size}_{direction}"] = values.astype(np.float32)
        average = sum(maps.values()) / len(maps)
        arrays[f"patch{size}_average"] = average.astype(np.float32)
        written.append(save(heat(average), f"patch{size}"))
    npz = os.path.join(args.out_dir, f"{name}_distances.npz")
    atomic_savez(npz, **arrays)
    print("\n".join(["written:"] + written + [npz]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
