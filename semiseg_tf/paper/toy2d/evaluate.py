"""Scores of a learned decision boundary against the true one, and its picture.

The authors' error rate counts only the generated points, which leave out the eroded band around the
true boundary, so a boundary anywhere inside that band scores perfectly. These scores look at the
whole 512x512 grid: pixel accuracy, accuracy within `band` pixels of the true boundary, and the
distances from the predicted boundary to the true one and back (mean and 95th percentile).

One more score tells a misplaced boundary from a misshapen one: the true signed distance read along
the predicted boundary (its "level"). A boundary that follows a distance contour at some offset has a
small spread and a mean equal to the offset (negative: towards class 0); one that cuts across the
contours has a large spread.
"""
import math

import cv2
import numpy as np
from scipy import ndimage

from semiseg_tf.paper.toy2d import data
from semiseg_tf.visualise import class_boundaries

BAND_PX = 35
CLASS_COLOURS = ((255, 128, 0), (0, 0, 255))    # labelled points: class 0 orange, class 1 blue


def grid_points(size):
    """Normalised [y, x] of every pixel centre, row-major, [H * W, 2]."""
    rows, cols = np.mgrid[0:size[0], 0:size[1]].astype(np.float64)
    return data.to_normalised(np.stack([rows.ravel(), cols.ravel()], 1) + 0.5, size)


def _distances_to(edge_from, edge_to):
    """Distance (px) from each pixel of `edge_from` to the nearest pixel of `edge_to`."""
    if not edge_to.any() or not edge_from.any():
        return None
    return ndimage.distance_transform_edt(~edge_to)[edge_from]


def _summary(distances):
    if distances is None:
        return {"mean": None, "p95": None}
    return {"mean": float(distances.mean()), "p95": float(np.percentile(distances, 95))}


def boundary_scores(predicted, region, distance_map, band=BAND_PX):
    """Scores of a predicted class-1 mask against the true region (both [H, W] bool).

    Distances are None when the prediction has no boundary (one class everywhere).
    """
    correct = predicted == region
    near = np.abs(distance_map) <= band
    predicted_edge, true_edge = class_boundaries(predicted), class_boundaries(region)
    return {
        "pixel_accuracy": float(correct.mean()),
        f"accuracy_within_{band}px": float(correct[near].mean()),
        "predicted_to_true_boundary_px": _summary(_distances_to(predicted_edge, true_edge)),
        "true_to_predicted_boundary_px": _summary(_distances_to(true_edge, predicted_edge)),
        "predicted_boundary_level_px": _level(distance_map[predicted_edge]),
    }


def _level(signed_distances):
    if not signed_distances.size:
        return {"mean": None, "std": None}
    return {"mean": float(signed_distances.mean()), "std": float(signed_distances.std())}


def render(probability, toy, title=None):
    """uint8 RGB [H, W, 3]: the class-1 probability (white to green), the unlabelled points' density
    (darker where denser), the true boundary (magenta), the predicted one (black) and the labelled
    points (circles, orange for class 0, blue for class 1)."""
    size = toy.region.shape
    counts = np.zeros(size)
    pixels = np.clip(np.floor(data.to_pixels(toy.unlabelled_x, size)).astype(int), 0, size[0] - 1)
    np.add.at(counts, (pixels[:, 0], pixels[:, 1]), 1)
    density = 1 - 0.75 ** counts
    picture = np.ones(size + (3,))
    picture -= 0.3 * probability[..., None] * np.array([1.0, 0.25, 1.0])     # green where class 1
    picture *= (1 - 0.35 * density)[..., None]
    picture[class_boundaries(toy.region)] = (1.0, 0.0, 1.0)
    picture[class_boundaries(probability >= 0.5)] = (0.0, 0.0, 0.0)
    picture = np.ascontiguousarray((picture * 255).astype(np.uint8))
    for point, cls in zip(data.to_pixels(toy.labelled_x, size), toy.labelled_y):
        centre = (int(round(point[1])), int(round(point[0])))
        cv2.circle(picture, centre, 6, CLASS_COLOURS[int(cls)], 2, lineType=cv2.LINE_AA)
    if title:
        cv2.putText(picture, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return picture


def json_safe(value):
    """NaN and infinities as None, recursively (JSON has neither)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
