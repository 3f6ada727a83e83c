"""Dataset-level IoU from a confusion matrix (SPEC 5)."""
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
