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


def all_gathered(value):
    """`value` ([n, ...]) of every replica, concatenated on the first axis (itself on one device)."""
    ctx = _replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return value
    return ctx.all_gather(value, axis=0)


def cross_entropy(logits, labels, class_weights=None, ohem=None):
    """Mean cross-entropy over the labelled pixels of the global batch; 255 is ignored.

    Args:
      logits: [N, H, W, C] float.
      labels: [N, H, W] int32.
      class_weights: None, or [C] float: each pixel's loss weighted by its class's weight, and the
        sum divided by the sum of the weights (PyTorch's CrossEntropyLoss(weight=...)).
      ohem: None, or (thresh, min_kept): only the hard pixels count (`ohem_kept`).
    """
    valid = tf.not_equal(labels, IGNORE_LABEL)
    safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels,
                                                               logits=tf.cast(logits, tf.float32))
    if ohem is not None:
        valid = tf.logical_and(valid, ohem_kept(logits, safe_labels, valid, *ohem))
    if class_weights is None:
        local_sum = tf.reduce_sum(tf.where(valid, per_pixel, 0.0))
        count = global_sum(tf.reduce_sum(tf.cast(valid, tf.float32)))
    else:
        weight = tf.where(valid, tf.gather(tf.cast(class_weights, tf.float32), safe_labels), 0.0)
        local_sum = tf.reduce_sum(tf.where(valid, per_pixel * weight, 0.0))
        count = global_sum(tf.reduce_sum(weight))
    return local_sum / tf.maximum(tf.stop_gradient(count), 1e-12 if class_weights is not None
                                  else 1.0)


def ohem_kept(logits, labels, valid, thresh, min_kept):
    """Online hard example mining as UniMatch's ProbOhemCrossEntropy2d: [N, H, W] bool, the pixels
    whose probability of their true class is at most the threshold, the larger of `thresh` and the
    `min_kept`-th smallest such probability (so at least `min_kept` pixels stay). Ignored pixels
    count with probability 1. When the batch has fewer than `min_kept` valid pixels, or `min_kept`
    is 0, every pixel is kept (as in that code, which mines only inside `if min_kept > 0`). Both
    counts are over the global batch (all replicas), where UniMatch counts per GPU.
    """
    if min_kept <= 0:
        return tf.ones_like(valid)
    probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
    true_prob = tf.where(valid, tf.gather(probs, labels, axis=-1, batch_dims=3), 1.0)
    true_prob = tf.stop_gradient(true_prob)
    num_valid = global_sum(tf.reduce_sum(tf.cast(valid, tf.int64)))
    every = tf.sort(all_gathered(tf.reshape(true_prob, [-1])))
    kth = every[tf.minimum(int(min_kept), tf.size(every)) - 1]
    threshold = tf.maximum(tf.constant(float(thresh)), kth)
    apply = tf.logical_and(num_valid >= int(min_kept), num_valid > 0)
    return tf.logical_or(tf.logical_not(apply), true_prob <= threshold)


# Consistency losses per pixel. Each takes the student's logits and the teacher's target
# logits and probabilities ([N, H, W, C], in the student's frame) and returns [N, H, W, 1].

def _student_probs(student_logits):
    return tf.nn.softmax(tf.cast(student_logits, tf.float32), axis=-1)


def squared_probability_difference(student_logits, teacher_logits, teacher_probs):
    """'var', the default: sum over classes of (p_student - p_teacher)^2."""
    del teacher_logits
    diff = _student_probs(student_logits) - teacher_probs
    return tf.reduce_sum(tf.square(diff), axis=-1, keepdims=True)


def binary_cross_entropy(student_logits, teacher_logits, teacher_probs):
    """'bce': sum over classes of -(pt log(ps + 1e-6) + (1 - pt) log(1 - ps + 1e-6))."""
    del teacher_logits
    ps = _student_probs(student_logits)
    per_class = teacher_probs * tf.math.log(ps + 1e-6) + (1 - teacher_probs) * tf.math.log(1 - ps + 1e-6)
    return -tf.reduce_sum(per_class, axis=-1, keepdims=True)


def kl_divergence(student_logits, teacher_logits, teacher_probs):
    """'kld': KL(teacher || student) = sum over classes of pt (log pt - log ps); pt = 0 terms are 0."""
    del teacher_logits
    log_ps = tf.nn.log_softmax(tf.cast(student_logits, tf.float32), axis=-1)
    per_class = tf.math.xlogy(teacher_probs, teacher_probs) - teacher_probs * log_ps
    return tf.reduce_sum(per_class, axis=-1, keepdims=True)


def hard_label_cross_entropy(student_logits, teacher_logits, teacher_probs):
    """'hard_ce': cross-entropy of the student against the target's most likely class, a hard
    pseudo-label (FixMatch's and UniMatch's unlabelled loss): -log ps[argmax pt]."""
    del teacher_logits
    log_ps = tf.nn.log_softmax(tf.cast(student_logits, tf.float32), axis=-1)
    pseudo_label = tf.argmax(teacher_probs, axis=-1)
    return -tf.gather(log_ps, pseudo_label, axis=-1, batch_dims=3)[..., tf.newaxis]


def _sqrt_classes(logits):
    return tf.sqrt(tf.cast(tf.shape(logits)[-1], tf.float32))


def squared_logit_difference(student_logits, teacher_logits, teacher_probs):
    """'logits_var': sum over classes of (l_student - l_teacher)^2, divided by sqrt(classes)."""
    del teacher_probs
    diff = tf.cast(student_logits, tf.float32) - teacher_logits
    return tf.reduce_sum(tf.square(diff), axis=-1, keepdims=True) / _sqrt_classes(teacher_logits)


def smooth_l1_logit_difference(student_logits, teacher_logits, teacher_probs):
    """'logits_smoothl1': sum over classes of Huber(l_student - l_teacher, beta=1) / sqrt(classes)."""
    del teacher_probs
    diff = tf.abs(tf.cast(student_logits, tf.float32) - teacher_logits)
    huber = tf.where(diff < 1.0, 0.5 * tf.square(diff), diff - 0.5)
    return tf.reduce_sum(huber, axis=-1, keepdims=True) / _sqrt_classes(teacher_logits)


CONSISTENCY_LOSSES = {
    "var": squared_probability_difference,
    "bce": binary_cross_entropy,
    "kld": kl_divergence,
    "hard_ce": hard_label_cross_entropy,
    "logits_var": squared_logit_difference,
    "logits_smoothl1": smooth_l1_logit_difference,
}


def sigmoid_rampup(step, length):
    """exp(-5 (1 - t)^2) with t = clip(step / length, 0, 1); 1 when `length` <= 0."""
    if length <= 0:
        return tf.constant(1.0)
    t = tf.clip_by_value(tf.cast(step, tf.float32) / float(length), 0.0, 1.0)
    return tf.exp(-5.0 * tf.square(1.0 - t))


def confident_share(teacher_confidence, threshold):
    """Share of all pixels of the global batch whose teacher confidence is >= threshold.

    Every pixel counts, valid or not, as in the reference.
    """
    confident = tf.cast(teacher_confidence >= threshold, tf.float32)
    total = global_sum(tf.cast(tf.size(confident), tf.float32))
    return global_sum(tf.reduce_sum(confident)) / total


def masked_average(per_pixel, loss_mask, over=None):
    """Sum of per_pixel * loss_mask over the global batch, divided by the global sum of `over` (a
    [N, H, W, 1] weight; None: every pixel counts 1). 0 where `over` sums to 0."""
    local = tf.reduce_sum(per_pixel * loss_mask)
    if over is None:
        total = global_sum(tf.cast(tf.size(per_pixel), tf.float32))
    else:
        total = global_sum(tf.stop_gradient(tf.reduce_sum(over)))
    return tf.math.divide_no_nan(local, total)
