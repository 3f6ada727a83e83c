"""The one trainer: a Keras model holding student and EMA teacher, with a custom `train_step`.

One step (SPEC 0, 2.2): cross-entropy on the labelled batch; if `cons_weight > 0`, the perturbation's
consistency loss on the unlabelled batches, weighted by the share of confident teacher pixels; one
optimiser update of the student; then teacher <- alpha * teacher + (1 - alpha) * student over every
float weight, batch-norm moving statistics included. A `cons_weight` of 0 is the supervised baseline
through the same code. Correct under `tf.distribute`: see `losses.py` for how losses are scaled.
"""
import keras
import tensorflow as tf

from semiseg_tf.semisup import losses


class MeanTeacher(keras.Model):
    """Student, teacher and the training step.

    Args:
      student, teacher: two networks of the same architecture; the teacher starts as a copy.
      perturbation: a `perturbations.Perturbation`, or None for the supervised baseline.
      cons_weight: weight of the consistency loss (0: supervised baseline).
      conf_thresh: teacher confidence threshold; 0 turns confidence weighting off.
      teacher_alpha: EMA decay of the teacher.
      cons_loss_fn: name in `losses.CONSISTENCY_LOSSES`.
      weight_decay: L2 coefficient added to the gradient (the authors' SGD `weight_decay`).
    """

    def __init__(self, student, teacher, perturbation=None, cons_weight=1.0, conf_thresh=0.97,
                 teacher_alpha=0.99, cons_loss_fn="var", weight_decay=0.0, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        self.perturbation = perturbation
        self.cons_weight = float(cons_weight)
        self.conf_thresh = float(conf_thresh)
        self.teacher_alpha = float(teacher_alpha)
        self.cons_loss = losses.CONSISTENCY_LOSSES[cons_loss_fn]
        self.weight_decay = float(weight_decay)
        # The teacher stays `trainable`: in Keras 3 a non-trainable BatchNormalization ignores
        # training=True and uses its moving statistics, but the authors' teacher runs with batch
        # statistics. It never gets gradients: the tape and the optimiser see student variables only.

    @property
    def uses_unlabelled(self):
        return self.cons_weight > 0 and self.perturbation is not None

    def call(self, images, training=False):
        """The teacher is the network that is evaluated and exported."""
        return self.teacher(images, training=training)

    def initialise(self, image_shape):
        """Builds both networks and the optimiser, and makes the teacher an exact copy of the student.

        Call inside `strategy.scope()`, before training or restoring a checkpoint.
        """
        dummy = tf.zeros((1,) + tuple(image_shape), tf.float32)
        self.student(dummy)
        self.teacher(dummy)
        if [w.shape for w in self.teacher.weights] != [w.shape for w in self.student.weights]:
            raise ValueError("student and teacher must be the same architecture")
        for teacher_var, student_var in zip(self.teacher.weights, self.student.weights):
            teacher_var.assign(student_var)
        self.optimizer.build(self.student.trainable_variables)
        self.built = True

    def _ema_pairs(self):
        return [(t, s) for t, s in zip(self.teacher.weights, self.student.weights)
                if keras.backend.is_float_dtype(t.dtype)]

    def update_teacher(self):
        alpha = self.teacher_alpha
        for teacher_var, student_var in self._ema_pairs():
            teacher_var.assign(alpha * teacher_var + (1.0 - alpha) * student_var)

    def consistency(self, unlabelled):
        """Weighted consistency loss (this replica's share), the confident share and the terms."""
        terms = self.perturbation.consistency(self.student, self.teacher, unlabelled)
        per_pixel = self.cons_loss(terms.student_logits, terms.teacher_probs)
        loss = losses.masked_pixel_mean(per_pixel, terms.loss_mask)
        if self.conf_thresh > 0:
            share = losses.confident_share(terms.teacher_confidence, self.conf_thresh)
            loss = loss * tf.stop_gradient(share)
        else:
            share = tf.constant(1.0)
        return loss, share, terms

    def train_step(self, data):
        labelled = data["labelled"]
        student_vars = self.student.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.student(labelled["image"], training=True)
            sup_loss = losses.cross_entropy(logits, labelled["label"])
            total = sup_loss
            if self.uses_unlabelled:
                cons_loss, conf_share, _ = self.consistency(data["unlabelled"])
                total = total + self.cons_weight * cons_loss
            else:
                cons_loss, conf_share = tf.constant(0.0), tf.constant(0.0)
        grads = tape.gradient(total, student_vars)
        if self.weight_decay > 0:
            # Summed over replicas by the optimiser, so each replica adds its 1/N share.
            decay = self.weight_decay / losses.num_replicas()
            grads = [g + decay * v for g, v in zip(grads, student_vars)]
        learning_rate = self.optimizer.learning_rate
        self.optimizer.apply_gradients(zip(grads, student_vars))
        self.update_teacher()
        return {"sup_loss": losses.global_sum(sup_loss),
                "cons_loss": losses.global_sum(cons_loss),
                "conf_share": conf_share,
                "learning_rate": learning_rate}
