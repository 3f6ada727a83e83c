"""Supervised and consistency losses, written for one replica of a distributed batch.

Gradients are summed across replicas, so each function returns this replica's share of the loss of
the *global* batch: dividing by global counts (all-reduced) keeps one device and N devices identical.
"""
import tensorflow as tf

from semiseg_tf.data.base import IGNORE_LABEL


def _replica_context():
    return tf.distribute.get_replica_context()


def global_sum(value):
    """Sum of `value` over all replicas (the value itself on one device)."""
    ctx = _replica_context()
    if ctx is None:  # cross-replica context: nothing to combine
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)


def num_replicas():
    ctx = _replica_context()
    return 1 if ctx is None else ctx.num_replicas_in_sync


def cross_entropy(logits, labels):
    """Mean cross-entropy over the labelled pixels of the global batch; 255 is ignored.

    Args:
      logits: [N, H, W, C] float.
      labels: [N, H, W] int32.
    """
    valid = tf.not_equal(labels, IGNORE_LABEL)
    safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels,
                                                               logits=tf.cast(logits, tf.float32))
    local_sum = tf.reduce_sum(tf.where(valid, per_pixel, 0.0))
    count = global_sum(tf.reduce_sum(tf.cast(valid, tf.float32)))
    return local_sum / tf.maximum(tf.stop_gradient(count), 1.0)


def squared_probability_difference(student_logits, teacher_probs):
    """The authors' default `var` loss per pixel: sum over classes of (p_student - p_teacher)^2.

    Returns:
      [N, H, W, 1].
    """
    student_probs = tf.nn.softmax(tf.cast(student_logits, tf.float32), axis=-1)
    return tf.reduce_sum(tf.square(student_probs - teacher_probs), axis=-1, keepdims=True)


CONSISTENCY_LOSSES = {"var": squared_probability_difference}


def confident_share(teacher_confidence, threshold):
    """Share of all pixels of the global batch whose teacher confidence is >= threshold (SPEC 2.3).

    Every pixel counts, valid or not, as in the reference.
    """
    confident = tf.cast(teacher_confidence >= threshold, tf.float32)
    total = global_sum(tf.cast(tf.size(confident), tf.float32))
    return global_sum(tf.reduce_sum(confident)) / total


def masked_pixel_mean(per_pixel, loss_mask):
    """Mean of per_pixel * loss_mask over every pixel of the global batch (not over the mask's sum)."""
    local = tf.reduce_sum(per_pixel * loss_mask)
    total = global_sum(tf.cast(tf.size(per_pixel), tf.float32))
    return local / total
