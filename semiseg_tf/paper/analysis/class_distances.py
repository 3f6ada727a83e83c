"""Intra- versus inter-class patch distances across a dataset (supplement B.2).

  python -m semiseg_tf.paper.analysis.class_distances --dataset=cityscapes --data_dir=/data/cityscapes \
      --patch_size=225 --n_anchors=1000 --out_dir=runs/class_distances [--shard=1/8]
  python -m semiseg_tf.paper.analysis.class_distances --merge --out_dir=runs/class_distances

Anchors are pixels whose neighbour (left, right, up or down) belongs to another valid class; the
anchor's patch and its neighbour's are the inter-class pair, as close as two patches can be. For each
anchor the study then searches every other training image for the nearest patch of the anchor's own
class (intra-class) and of any other class. The paper finds the nearest same-class patch about three
times as far as the neighbour across the boundary: in pixel space, classes are not separated by
low-density regions.

The search is batched: per image one FFT, per anchor one FFT of its patch, and per anchor-image pair a
product and an inverse FFT give the distances to every window at once (TensorFlow, on a GPU when
present). Windows are centred on every pixel, the image mirrored beyond its border. `--shard=i/n`
does the i-th of n equal parts of the anchors; `--merge` combines the shard files (checking that they
are complete and of one study) into class_distances.npz and a histogram figure, class_distances.png.
"""
import argparse
import glob
import json
import os
import sys
import time

import numpy as np

from semiseg_tf.paper.analysis.patch_distance import box_sum
from semiseg_tf.files import atomic_savez, atomic_write_bytes, png_bytes
from semiseg_tf.progress import Progress

DIRECTIONS = ((0, -1), (0, 1), (-1, 0), (1, 0))     # left, right, up, down


def boundary_anchors(label, border):
    """[K, 4] rows (direction, y, x, class) of the pixels of `label` whose neighbour in a direction is
    another valid class, at least `border` pixels inside every edge."""
    label = np.asarray(label).astype(np.int64)
    height, width = label.shape
    rows = []
    for direction, (dy, dx) in enumerate(DIRECTIONS):
        ys, xs = np.mgrid[border:height - border, border:width - border]
        centre = label[ys, xs]
        neighbour = label[ys + dy, xs + dx]
        keep = (centre != 255) & (neighbour != 255) & (centre != neighbour)
        rows.append(np.stack([np.full(keep.sum(), direction), ys[keep], xs[keep], centre[keep]], 1))
    return np.concatenate(rows) if rows else np.zeros((0, 4), np.int64)


def choose_anchors(labels, patch_size, n_anchors, seed):
    """[n, 5] rows (image, direction, y, x, class): `n_anchors` drawn without replacement, uniformly
    from every boundary pixel of the dataset (numpy default_rng(seed)), sorted by image."""
    border = (patch_size - 1) // 2 + 1
    per_image = [boundary_anchors(label, border) for label in labels]
    counts = np.array([len(rows) for rows in per_image])
    total = int(counts.sum())
    if total == 0:
        raise ValueError(f"no class boundaries at least {border} px inside the images "
                         f"(patch size {patch_size})")
    chosen = np.sort(np.random.default_rng(seed).choice(total, min(n_anchors, total), replace=False))
    image = np.searchsorted(np.cumsum(counts), chosen, side="right")
    offset = chosen - np.concatenate([[0], np.cumsum(counts)])[image]
    return np.array([[i, *per_image[i][k]] for i, k in zip(image, offset)], np.int64)


def extract_patch(image, y, x, size):
    half = (size - 1) // 2
    return image[y - half:y + half + 1, x - half:x + half + 1]


def sliding_distances(image, patches):
    """Euclidean distance from each patch to the window centred on every pixel of `image`.

    image [H, W, C]; patches [n, p, p, C] (p odd). The image is mirrored (numpy 'symmetric') by
    (p - 1) / 2 beyond its border. Returns [n, H, W] float32. Uses |W - P|^2 = sum W^2 + sum P^2 -
    2 corr(W, P), the correlation by FFT (TensorFlow).
    """
    import tensorflow as tf
    size = patches.shape[1]
    half = (size - 1) // 2
    height, width = image.shape[:2]
    padded = np.pad(image, ((half, half), (half, half), (0, 0)), mode="symmetric").astype(np.float64)
    big_h, big_w = padded.shape[:2]
    window_energy = box_sum((padded ** 2).sum(-1), (size, size))                   # [H, W]
    patch_energy = (patches.astype(np.float64) ** 2).sum(axis=(1, 2, 3))          # [n]
    # Correlation = IFFT(FFT(image) * conj(FFT(patch zero-padded to the image's size))), summed over
    # channels; entry (y, x) is the window whose top-left corner is (y, x).
    image_f = tf.signal.rfft2d(tf.constant(np.moveaxis(padded, -1, 0), tf.float32))   # [C, h, w']
    patch_full = np.zeros((len(patches), padded.shape[2], big_h, big_w), np.float32)
    patch_full[:, :, :size, :size] = np.moveaxis(patches, -1, 1)
    patch_f = tf.signal.rfft2d(tf.constant(patch_full))                               # [n, C, h, w']
    correlation = tf.signal.irfft2d(tf.reduce_sum(image_f[None] * tf.math.conj(patch_f), axis=1),
                                    fft_length=[big_h, big_w])[:, :height, :width]
    squared_distance = (window_energy[None] + patch_energy[:, None, None]
                        - 2 * correlation.numpy().astype(np.float64))
    return np.sqrt(np.maximum(squared_distance, 0)).astype(np.float32)


def _nearest(distances, mask):
    """(distance, y, x) of the smallest entry of `distances` [H, W] where `mask`, or (inf, -1, -1)."""
    if not mask.any():
        return np.inf, -1, -1
    masked = np.where(mask, distances, np.inf)
    flat = int(np.argmin(masked))
    return float(masked.flat[flat]), flat // masked.shape[1], flat % masked.shape[1]


class ImageSet:
    """Training images by index: `read(i)` -> (uint8 image [H, W, 3], label [H, W]), `count`."""

    def __init__(self, read, count):
        self.read, self.count = read, count

    @classmethod
    def from_source(cls, source):
        import tensorflow as tf

        def read(index):
            image, label = source.read_train(tf.constant(index, tf.int64))
            return image.numpy(), label.numpy()
        return cls(read, source.num_train)


def study(images, anchors, patch_size, batch=32, progress=None):
    """For each anchor row (image, direction, y, x, class) of an `ImageSet`: the distance to its
    neighbour's patch across the boundary, and over all other images the nearest window of the
    anchor's class (intra) and of another valid class (inter).

    Returns a dict of arrays: boundary, intra, inter [n] (float32, inf where no window qualifies);
    intra_at, inter_at [n, 3] (image, y, x) of those windows' centres. `progress`: a
    `Progress` over anchor-image pairs, updated after each image.
    """
    n = len(anchors)
    result = {"boundary": np.zeros(n, np.float32),
              "intra": np.full(n, np.inf, np.float32), "inter": np.full(n, np.inf, np.float32),
              "intra_at": np.full((n, 3), -1, np.int64), "inter_at": np.full((n, 3), -1, np.int64)}
    pairs_done = 0
    patches = np.zeros((n, patch_size, patch_size, 3), np.float32)
    for k, (img, direction, y, x, _) in enumerate(anchors):
        image = images.read(int(img))[0].astype(np.float32) / 255.0
        dy, dx = DIRECTIONS[direction]
        patches[k] = extract_patch(image, y, x, patch_size)
        neighbour = extract_patch(image, y + dy, x + dx, patch_size)
        result["boundary"][k] = np.sqrt(((patches[k] - neighbour) ** 2).sum())
    for j in range(images.count):
        image, label = images.read(j)
        image = image.astype(np.float32) / 255.0
        others = np.flatnonzero(anchors[:, 0] != j)
        for start in range(0, len(others), batch):
            chunk = others[start:start + batch]
            for k, distances in zip(chunk, sliding_distances(image, patches[chunk])):
                cls = anchors[k, 4]
                for kind, mask in (("intra", label == cls),
                                   ("inter", (label != cls) & (label != 255))):
                    value, y, x = _nearest(distances, mask)
                    if value < result[kind][k]:
                        result[kind][k] = value
                        result[f"{kind}_at"][k] = (j, y, x)
        pairs_done += len(others)
        if progress is not None:
            progress.update(pairs_done)
    return result


def _shard_path(out_dir, index, count):
    return os.path.join(out_dir, f"shard_{index:04d}_of_{count:04d}.npz")


def run_shard(source, args, index, count, out=sys.stderr):
    """Chooses the anchors (the same for every shard), studies this shard's part, writes its file."""
    images = ImageSet.from_source(source)
    start = time.perf_counter()
    labels = (images.read(i)[1] for i in range(images.count))
    anchors = choose_anchors(labels, args.patch_size, args.n_anchors, args.seed)
    part = np.array_split(np.arange(len(anchors)), count)[index]
    print(f"{len(anchors)} anchors from {images.count} images ({time.perf_counter() - start:.0f}s); "
          f"shard {index + 1}/{count}: anchors {part[0] if len(part) else 0}-"
          f"{part[-1] if len(part) else 0}", file=out, flush=True)
    # Every anchor is searched in every image but its own.
    pairs = sum(int((anchors[part, 0] != j).sum()) for j in range(images.count))
    progress = Progress("searched", pairs, "anchor-image pairs", out)
    result = study(images, anchors[part], args.patch_size, args.batch, progress)
    meta = {"dataset": args.dataset, "patch_size": args.patch_size, "n_anchors": args.n_anchors,
            "seed": args.seed, "shards": count, "shard": index, "anchors_total": len(anchors),
            "pairs_per_second": progress.rate}
    path = _shard_path(args.out_dir, index, count)
    atomic_savez(path, anchors=anchors[part], positions=part, meta=json.dumps(meta), **result)
    return path, meta


def merge(out_dir):
    """Combines complete shard files of one study into class_distances.npz; returns its arrays."""
    files = sorted(glob.glob(os.path.join(out_dir, "shard_*_of_*.npz")))
    if not files:
        raise ValueError(f"{out_dir}: no shard_*_of_*.npz files to merge")
    loaded = [dict(np.load(f, allow_pickle=False)) for f in files]
    metas = [json.loads(str(d["meta"])) for d in loaded]
    study_keys = [{k: m[k] for k in ("dataset", "patch_size", "n_anchors", "seed", "shards")}
                  for m in metas]
    if any(k != study_keys[0] for k in study_keys):
        raise ValueError(f"{out_dir}: the shard files come from different studies; keep one")
    expected = set(range(study_keys[0]["shards"]))
    missing = sorted(expected - {m["shard"] for m in metas})
    if missing:
        raise ValueError(f"{out_dir}: shards {', '.join(str(m + 1) for m in missing)} of "
                         f"{study_keys[0]['shards']} are missing")
    order = np.argsort(np.concatenate([d["positions"] for d in loaded]))
    merged = {key: np.concatenate([d[key] for d in loaded])[order]
              for key in ("anchors", "boundary", "intra", "inter", "intra_at", "inter_at")}
    atomic_savez(os.path.join(out_dir, "class_distances.npz"), meta=json.dumps(study_keys[0]),
                  **merged)
    return merged


def histogram_figure(boundary, intra):
    """uint8 RGB: histograms of the inter-class (neighbour across the boundary) and the nearest
    intra-class distances, and of their ratio intra / inter."""
    import cv2
    panels = []
    finite = np.isfinite(intra) & (boundary > 0)
    for title, values in (("inter-class: neighbour across the boundary", boundary),
                          ("intra-class: nearest same-class patch, other images", intra[finite]),
                          ("ratio intra / inter", intra[finite] / boundary[finite])):
        panel = np.full((220, 420, 3), 255, np.uint8)
        cv2.putText(panel, title, (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        if len(values):
            counts, edges = np.histogram(values, bins=50)
            top = max(counts.max(), 1)
            for b, c in enumerate(counts):
                x0 = 20 + b * 380 // 50
                height = int(160 * c / top)
                cv2.rectangle(panel, (x0, 195 - height), (x0 + 380 // 50 - 1, 195), (60, 90, 200), -1)
            cv2.line(panel, (20, 195), (400, 195), (0, 0, 0), 1)
            for x, value in ((20, edges[0]), (360, edges[-1])):
                cv2.putText(panel, f"{value:.3g}", (x, 212), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                            (0, 0, 0), 1, cv2.LINE_AA)
            cv2.putText(panel, f"median {np.median(values):.3g}, n={len(values)}", (240, 40),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        panels.append(panel)
    return np.concatenate(panels, axis=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("--dataset", default="synthetic", help="synthetic, cityscapes, pascal_aug, "
                        "isic2017, camvid or folder (training images)")
    parser.add_argument("--data_dir", help="the dataset's folder (file-based datasets)")
    parser.add_argument("--prepared_dir", help="its prepared records (default as in training)")
    parser.add_argument("--synthetic_num_train", type=int, default=200,
                        help="--dataset=synthetic: images to search")
    parser.add_argument("--patch_size", type=int, default=225, help="odd patch side (paper: 225)")
    parser.add_argument("--n_anchors", type=int, default=1000, help="anchors (paper: 1000)")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the anchor draw")
    parser.add_argument("--batch", type=int, default=32, help="anchors per FFT batch")
    parser.add_argument("--shard", default="1/1", help="i/n: do the i-th of n parts of the anchors")
    parser.add_argument("--merge", action="store_true", help="combine the shard files in --out_dir")
    parser.add_argument("--out_dir", required=True, help="shard files, merged results and figure")
    args = parser.parse_args(argv)
    from semiseg_tf.data.native import DataError
    try:
        if not args.merge:
            try:
                index, count = (int(v) for v in args.shard.split("/"))
                if not 1 <= index <= count:
                    raise ValueError
            except ValueError:
                raise ValueError(f"--shard={args.shard}: expected i/n with 1 <= i <= n") from None
            if args.patch_size <= 0 or args.patch_size % 2 == 0:
                raise ValueError(f"--patch_size={args.patch_size}: expected an odd positive size")
            os.makedirs(args.out_dir, exist_ok=True)
            from semiseg_tf.paper.analysis.sources import open_source
            source = open_source(args.dataset, args.data_dir, args.prepared_dir,
                                 args.synthetic_num_train)
            path, meta = run_shard(source, args, index - 1, count)
            print(f"wrote {path} ({meta['pairs_per_second']:.1f} anchor-image pairs/s)")
            if count > 1:
                return 0
        merged = merge(args.out_dir)
    except (ValueError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    figure = os.path.join(args.out_dir, "class_distances.png")
    atomic_write_bytes(figure, png_bytes(histogram_figure(merged["boundary"], merged["intra"])))
    finite = np.isfinite(merged["intra"]) & (merged["boundary"] > 0)
    ratio = merged["intra"][finite] / merged["boundary"][finite]
    print(f"{len(merged['boundary'])} anchors: median inter-class distance "
          f"{np.median(merged['boundary']):.3f}, median nearest intra-class "
          f"{np.median(merged['intra'][finite]):.3f}, "
          f"median ratio {np.median(ratio):.2f}; {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
