"""The 2-D toy problem's data: points drawn from a hand-drawn two-class image.

Points are [y, x] pairs normalised as `pixel / 512 * 2 - 1` (the authors' convention). The unlabelled
set is one point per pixel of each class region, after eroding both regions by `erode_radius` (35
opens an empty band about 70 px wide between the classes; 0 leaves none), jittered by Gaussian noise.
The 10 labelled points are the paper's own (`curve_mask_v3_35.npz`).
"""
import dataclasses
import os

import numpy as np
from PIL import Image
from scipy import ndimage

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
IMAGE_PATH = os.path.join(DATA_DIR, "curve_mask_v3.png")
SAMPLES_PATH = os.path.join(DATA_DIR, "curve_mask_v3_35.npz")


def load_region(path=IMAGE_PATH):
    """Boolean [H, W]: True in class 1 (pixels at least half grey)."""
    image = np.asarray(Image.open(path).convert("L"), np.float64) / 255.0
    return image >= 0.5


def to_normalised(pixels, size):
    """Pixel coordinates [..., (y, x)] to the authors' normalised coordinates."""
    return np.asarray(pixels, np.float64) / np.asarray(size, np.float64) * 2 - 1


def to_pixels(points, size):
    return (np.asarray(points, np.float64) + 1) / 2 * np.asarray(size, np.float64)


def region_pixels(region, erode_radius):
    """Integer (row, col) of every pixel left in each class after erosion, class 0 first, each in
    row-major order, and their labels. Erosion uses scipy's 3x3 cross, `erode_radius` times, with the
    image border counted as outside (so regions also shrink away from the border), as the authors'."""
    positions, labels = [], []
    for cls, mask in ((0, ~region), (1, region)):
        if erode_radius > 0:
            mask = ndimage.binary_erosion(mask, iterations=erode_radius)
        pixels = np.argwhere(mask)
        positions.append(pixels)
        labels.append(np.full(len(pixels), cls, np.int32))
    return np.concatenate(positions), np.concatenate(labels)


def unlabelled_points(region, erode_radius, noise_std, seed):
    """(points [N, 2] normalised, labels [N]) regenerated from the image with `noise_std` pixels of
    isotropic Gaussian jitter (numpy RandomState(seed))."""
    pixels, labels = region_pixels(region, erode_radius)
    jitter = np.random.RandomState(seed).normal(0.0, noise_std, pixels.shape) if noise_std else 0.0
    return to_normalised(pixels + jitter, region.shape), labels


def labelled_points(path=SAMPLES_PATH):
    """The paper's 10 labelled points and labels (5 per class)."""
    with np.load(path, allow_pickle=False) as samples:
        return samples["clf_sup_X"].astype(np.float64), samples["clf_sup_y"].astype(np.int32)


def next_labelled_batch(rng, pending, count, batch):
    """The next labelled batch of the authors' endless sampler: successive random permutations of
    the `count` labelled points, concatenated. `pending`: indices drawn but not used yet. Returns
    (indices [batch], the new pending)."""
    while len(pending) < batch:
        pending = np.concatenate([pending, rng.permutation(count)])
    return pending[:batch], pending[batch:]


def signed_distance_map(region):
    """Distance in pixels to the other class: positive inside class 1, negative in class 0
    (`distance_transform_edt`)."""
    inside = ndimage.distance_transform_edt(region)
    outside = ndimage.distance_transform_edt(~region)
    return np.where(region, inside, -outside)


def lookup(distance_map, points):
    """Bilinear lookup of a [H, W] map at normalised [y, x] points, zero outside, as PyTorch's
    `grid_sample` (align_corners=False) does for the authors: normalised u maps to pixel
    ((u + 1) * size - 1) / 2."""
    size = np.asarray(distance_map.shape, np.float64)
    pixel = ((np.asarray(points, np.float64) + 1) * size - 1) / 2
    base = np.floor(pixel).astype(np.int64)
    frac = pixel - base
    padded = np.pad(distance_map, 1)       # zero padding, indices shifted by one
    result = np.zeros(len(pixel))
    for dy in (0, 1):
        for dx in (0, 1):
            y = np.clip(base[:, 0] + dy + 1, 0, padded.shape[0] - 1)
            x = np.clip(base[:, 1] + dx + 1, 0, padded.shape[1] - 1)
            weight = (frac[:, 0] if dy else 1 - frac[:, 0]) * (frac[:, 1] if dx else 1 - frac[:, 1])
            result += weight * padded[y, x]
    return result


def contour_constraint(distance_map, points, perturbed, contour_range):
    """1.0 where a perturbed point stays within `contour_range` pixels of its point's signed
    distance to the true boundary, else 0.0 (the authors' --dist_contour_range)."""
    change = lookup(distance_map, perturbed) - lookup(distance_map, points)
    return (change ** 2 <= contour_range ** 2).astype(np.float32)


@dataclasses.dataclass
class ToyData:
    region: np.ndarray           # [H, W] bool, class 1
    distance_map: np.ndarray     # [H, W] signed pixels
    labelled_x: np.ndarray
    labelled_y: np.ndarray
    unlabelled_x: np.ndarray
    unlabelled_y: np.ndarray


def load(erode_radius=35, noise_std=2.0, seed=12345, image_path=IMAGE_PATH,
         samples_path=SAMPLES_PATH):
    region = load_region(image_path)
    labelled_x, labelled_y = labelled_points(samples_path)
    unlabelled_x, unlabelled_y = unlabelled_points(region, erode_radius, noise_std, seed)
    return ToyData(region, signed_distance_map(region), labelled_x, labelled_y, unlabelled_x,
                   unlabelled_y)
