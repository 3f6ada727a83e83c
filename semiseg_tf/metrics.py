"""Dataset-level IoU and accuracies from a confusion matrix (SPEC 5)."""
import numpy as np
import tensorflow as tf

from semiseg_tf.data.base import IGNORE_LABEL


def confusion_matrix(labels, predictions, num_classes):
    """[C, C] int64 counts, rows = truth, columns = prediction; pixels labelled 255 are skipped."""
    labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
    predictions = tf.reshape(tf.cast(predictions, tf.int64), [-1])
    valid = tf.not_equal(labels, IGNORE_LABEL)
    index = tf.boolean_mask(labels, valid) * num_classes + tf.boolean_mask(predictions, valid)
    counts = tf.math.bincount(index, minlength=num_classes * num_classes,
                              maxlength=num_classes * num_classes, dtype=tf.int64)
    return tf.reshape(counts, [num_classes, num_classes])


def iou_from_confusion(confusion):
    """Per-class IoU = I / max(U, 1) accumulated over the whole dataset, and their mean over all classes.

    A class absent from both truth and prediction scores 0, as in the reference.

    Returns:
      (per_class float64 numpy [C], mean_iou float).
    """
    confusion = np.asarray(confusion, np.float64)
    intersection = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    per_class = intersection / np.maximum(union, 1)
    return per_class, float(per_class.mean())


def scores(confusion, class_names):
    """The scores of a confusion matrix [C, C] (rows = truth): mIoU and IoU per class (as
    `iou_from_confusion`), pixel accuracy, accuracy per class (the share of each class's pixels
    predicted as it; 0 for a class absent from the truth) and its mean over the classes present.

    Returns:
      dict with 'miou', 'per_class_iou', 'pixel_accuracy', 'per_class_accuracy',
      'mean_class_accuracy' and 'confusion' (lists of ints), JSON-ready.
    """
    confusion = np.asarray(confusion, np.int64)
    per_class_iou, mean_iou = iou_from_confusion(confusion)
    correct = np.diag(confusion).astype(np.float64)
    pixels_per_class = confusion.sum(1).astype(np.float64)
    per_class_accuracy = correct / np.maximum(pixels_per_class, 1)
    present = pixels_per_class > 0
    return {
        "miou": mean_iou,
        "per_class_iou": dict(zip(class_names, map(float, per_class_iou))),
        "pixel_accuracy": float(correct.sum() / max(confusion.sum(), 1)),
        "per_class_accuracy": dict(zip(class_names, map(float, per_class_accuracy))),
        "mean_class_accuracy": float(per_class_accuracy[present].mean()) if present.any() else 0.0,
        "confusion": confusion.tolist(),
    }
