"""Dataset-level IoU and accuracies from a confusion matrix, and the same as Keras metrics."""
import keras
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


# How a class absent from both the truth and the predictions of the whole set counts in the mean
# IoU and mean F1: "zero" scores it 0, as the paper's authors; "skip" leaves it out of the mean, as
# mmsegmentation (its IoU is NaN there, and the mean is a nanmean).
ABSENT_CLASSES = ("zero", "skip")


def _mean(per_class, counted):
    return float(per_class[counted].mean()) if counted.any() else 0.0


def iou_from_confusion(confusion, absent="zero"):
    """Per-class IoU = I / max(U, 1) accumulated over the whole dataset, and their mean.

    `absent` (ABSENT_CLASSES): a class absent from both truth and prediction (U = 0) scores 0 in
    the mean ("zero", as in the reference) or is left out of it ("skip").

    Returns:
      (per_class float64 numpy [C], mean_iou float).
    """
    if absent not in ABSENT_CLASSES:
        raise ValueError(f"absent={absent!r}: expected one of {ABSENT_CLASSES}")
    confusion = np.asarray(confusion, np.float64)
    intersection = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    per_class = intersection / np.maximum(union, 1)
    counted = union > 0 if absent == "skip" else np.ones_like(union, bool)
    return per_class, _mean(per_class, counted)


def scores(confusion, class_names, absent="zero"):
    """The scores of a confusion matrix [C, C] (rows = truth).

    - IoU per class and its mean, as `iou_from_confusion` (`absent` says how a class absent from
      truth and prediction counts in the means);
    - F1 per class, 2 TP / (2 TP + FP + FN), which is also its Dice coefficient, and its mean;
    - pixel (overall) accuracy; accuracy per class (the share of each class's pixels predicted as
      it; 0 for a class absent from the truth) and its mean over the classes present.

    Returns:
      dict with 'miou', 'per_class_iou', 'mean_f1', 'per_class_f1', 'pixel_accuracy',
      'per_class_accuracy', 'mean_class_accuracy', 'absent_classes' (the policy, and the classes
      it applied to) and 'confusion' (lists of ints), JSON-ready.
    """
    confusion = np.asarray(confusion, np.int64)
    per_class_iou, mean_iou = iou_from_confusion(confusion, absent)
    correct = np.diag(confusion).astype(np.float64)
    pixels_per_class = confusion.sum(1).astype(np.float64)
    predicted_per_class = confusion.sum(0).astype(np.float64)
    per_class_accuracy = correct / np.maximum(pixels_per_class, 1)
    present = pixels_per_class > 0
    seen = present | (predicted_per_class > 0)
    # F1 = 2 TP / ((TP + FN) + (TP + FP)): the truth's pixels of the class plus its predicted ones.
    per_class_f1 = 2 * correct / np.maximum(pixels_per_class + predicted_per_class, 1)
    mean_f1 = _mean(per_class_f1, seen if absent == "skip" else np.ones_like(seen))
    return {
        "miou": mean_iou,
        "per_class_iou": dict(zip(class_names, map(float, per_class_iou))),
        "mean_f1": mean_f1,
        "per_class_f1": dict(zip(class_names, map(float, per_class_f1))),
        "pixel_accuracy": float(correct.sum() / max(confusion.sum(), 1)),
        "per_class_accuracy": dict(zip(class_names, map(float, per_class_accuracy))),
        "mean_class_accuracy": _mean(per_class_accuracy, present),
        "absent_classes": {"counted_as": absent,
                           "classes": [n for n, s in zip(class_names, seen) if not s]},
        "confusion": confusion.tolist(),
    }


class ConfusionMetric(keras.metrics.Metric):
    """A Keras metric over the dataset's confusion matrix (float64 counts: exact to 2^53 pixels).

    `update_state(labels, predictions)`: labels [N, H, W] (255 skipped); predictions class ids
    [N, H, W], or scores [N, H, W, C] (probabilities or logits) of which the argmax is taken.
    """

    def __init__(self, num_classes, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.confusion = self.add_variable(shape=(self.num_classes, self.num_classes),
                                           initializer="zeros", dtype="float64", name="confusion")

    def update_state(self, labels, predictions, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__} takes no sample_weight: label a pixel 255 "
                             "to leave it out")
        predictions = tf.convert_to_tensor(predictions)
        if predictions.shape.rank == tf.convert_to_tensor(labels).shape.rank + 1:
            predictions = tf.argmax(predictions, axis=-1)
        counts = confusion_matrix(labels, predictions, self.num_classes)
        self.confusion.assign_add(tf.cast(counts, tf.float64))

    def reset_state(self):
        self.confusion.assign(tf.zeros_like(self.confusion))

    def get_config(self):
        return {"num_classes": self.num_classes, "name": self.name}


@keras.saving.register_keras_serializable(package="semiseg_tf")
class MeanIoU(ConfusionMetric):
    """Mean IoU over every class, as `iou_from_confusion`: IoU accumulated over the whole dataset,
    a class absent from both truth and prediction scoring 0 (as the paper's authors)."""

    def __init__(self, num_classes, name="miou", **kwargs):
        super().__init__(num_classes, name=name, **kwargs)

    def result(self):
        intersection = tf.linalg.diag_part(self.confusion)
        union = (tf.reduce_sum(self.confusion, 0) + tf.reduce_sum(self.confusion, 1)
                 - intersection)
        return tf.cast(tf.reduce_mean(intersection / tf.maximum(union, 1.0)), tf.float32)


@keras.saving.register_keras_serializable(package="semiseg_tf")
class PixelAccuracy(ConfusionMetric):
    """The share of labelled pixels predicted right (as `scores`' pixel_accuracy)."""

    def __init__(self, num_classes, name="pixel_accuracy", **kwargs):
        super().__init__(num_classes, name=name, **kwargs)

    def result(self):
        total = tf.maximum(tf.reduce_sum(self.confusion), 1.0)
        return tf.cast(tf.reduce_sum(tf.linalg.diag_part(self.confusion)) / total, tf.float32)
