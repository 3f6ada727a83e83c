"""The toy's classifier and its consistency training step, in TensorFlow.

An MLP on 2-D points; a mean teacher (EMA of every weight, batch-norm statistics included) or the
Pi-model (the student's prediction on the clean point is the target, with its gradient, as the
authors'). Consistency under Gaussian perturbation of the points, weighted per sample by the teacher's
confidence and, optionally, by the distance-contour constraint (`data.contour_constraint`).
"""
import dataclasses

import keras
import numpy as np
import tensorflow as tf

from semiseg_tf import checkpoints
from semiseg_tf.models.layers import TorchBiasUniform, torch_conv_init
from semiseg_tf.semisup import optim


def mlp(n_hidden=3, hidden_size=512, batch_norm=True, dropout=True, seed=None, name="toy_mlp"):
    """n_hidden x [Dense -> batch norm (optional) -> ReLU] -> Dropout(0.5) (optional) -> Dense(2),
    with PyTorch's default Linear initialisation."""
    inputs = keras.Input((2,), name="point")
    x, fan_in = inputs, 2
    for i in range(n_hidden):
        x = keras.layers.Dense(hidden_size, kernel_initializer=torch_conv_init(),
                               bias_initializer=TorchBiasUniform(fan_in), name=f"dense{i}")(x)
        if batch_norm:
            # PyTorch BatchNorm1d: momentum 0.1 (Keras counts the other way), eps 1e-5.
            x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        fan_in = hidden_size
    if dropout:
        x = keras.layers.Dropout(0.5, name="dropout")(x)
    logits = keras.layers.Dense(2, kernel_initializer=torch_conv_init(),
                                bias_initializer=TorchBiasUniform(fan_in), name="logits")(x)
    return keras.Model(inputs, logits, name=name)


@dataclasses.dataclass(frozen=True)
class ToyParams:
    model: str = "mean_teacher"       # or "pi"
    cons_weight: float = 10.0
    conf_thresh: float = 0.97
    conf_avg: bool = False
    cons_loss_fn: str = "var"         # var, bce, logits_var
    cons_dropout: bool = True         # dropout in the consistency passes (--cons_no_dropout: off)
    perturb_std: tuple = (0.0234375, 0.0234375)   # per axis (y, x), normalised units
    teacher_alpha: float = 0.99
    learning_rate: float = 2e-4


def consistency_per_sample(student_logits, target_logits, loss_fn):
    """Mean over the two classes of the chosen distance."""
    if loss_fn == "logits_var":
        return tf.reduce_mean(tf.square(student_logits - target_logits), axis=-1)
    student, target = tf.nn.softmax(student_logits), tf.nn.softmax(target_logits)
    if loss_fn == "var":
        return tf.reduce_mean(tf.square(student - target), axis=-1)
    if loss_fn == "bce":
        # The authors' robust binary cross-entropy: eps 1e-6 inside both logarithms.
        eps = 1e-6
        return -tf.reduce_mean(target * tf.math.log(student + eps)
                               + (1 - target) * tf.math.log(1 - student + eps), axis=-1)
    raise ValueError(f"unknown consistency loss {loss_fn!r}")


class ToyTrainer:
    """Student, teacher and optimiser; `step` is one compiled training iteration."""

    def __init__(self, params, network_options, seed, constraint=None):
        """`constraint(points, perturbed)`: numpy float32 weights per sample (e.g.
        `data.contour_constraint` bound to a distance map), or None for no constraint."""
        self.params = params
        self.constraint = constraint
        keras.utils.set_random_seed(seed)
        self.student = mlp(**network_options, name="student")
        self.teacher = (self.student if params.model == "pi"
                        else mlp(**network_options, name="teacher"))
        if self.teacher is not self.student:
            for t, s in zip(self.teacher.weights, self.student.weights):
                t.assign(s)     # the teacher starts as the student's copy
        self.optimizer = optim.build_optimizer("adam", params.learning_rate)   # PyTorch's Adam
        self.optimizer.build(self.student.trainable_variables)
        self._noise_seed = tf.Variable([seed, 0], dtype=tf.int64, trainable=False)
        # Where the epoch loop is (epoch, its numpy RandomState, ...), as JSON, so that one checkpoint
        # holds the whole state of a run and a killed run resumes exactly where it was.
        self.loop_state = tf.Variable("", dtype=tf.string, trainable=False)
        self.run_checkpoint = checkpoints.RunCheckpoint(
            student=self.student, teacher=self.teacher, optimizer=self.optimizer,
            noise_seed=self._noise_seed, loop_state=self.loop_state)
        self.step = tf.function(self._step, input_signature=[
            tf.TensorSpec([None, 2], tf.float64), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None, 2], tf.float64)])

    @property
    def prediction_net(self):
        """The network that is evaluated: the teacher (the student for the Pi-model)."""
        return self.teacher

    def _step(self, sup_x, sup_y, unsup_x):
        """One iteration on a labelled and an unlabelled batch of points; returns the losses."""
        p = self.params
        seed = self._noise_seed.read_value()
        self._noise_seed.assign_add([0, 1])
        perturbed = unsup_x + tf.random.stateless_normal(tf.shape(unsup_x), seed, dtype=tf.float64) \
            * tf.constant(p.perturb_std, tf.float64)
        with tf.GradientTape() as tape:
            logits = self.student(tf.cast(sup_x, tf.float32), training=True)
            sup_loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(sup_y, logits))
            cons_loss, conf_rate = tf.constant(0.0), tf.constant(0.0)
            if p.cons_weight > 0:
                clean = tf.cast(unsup_x, tf.float32)
                if p.model == "pi":
                    target = self.student(clean, training=p.cons_dropout)
                else:
                    target = tf.stop_gradient(self.teacher(clean, training=p.cons_dropout))
                student = self.student(tf.cast(perturbed, tf.float32), training=p.cons_dropout)
                confident = tf.cast(tf.reduce_max(tf.nn.softmax(target), axis=-1) >= p.conf_thresh,
                                    tf.float32) if p.conf_thresh > 0 else tf.ones_like(target[:, 0])
                conf_rate = tf.reduce_mean(confident)
                if p.conf_avg:
                    confident = tf.fill(tf.shape(confident), conf_rate)
                if self.constraint is None:
                    weight = tf.ones_like(confident)
                else:
                    weight = tf.numpy_function(self.constraint, [unsup_x, perturbed], tf.float32,
                                               stateful=False)
                    weight.set_shape(confident.shape)
                per_sample = consistency_per_sample(student, target, p.cons_loss_fn)
                # Normalised by the samples passing the constraint (the authors divide by zero when
                # none pass; here the loss is then 0).
                cons_loss = tf.math.divide_no_nan(tf.reduce_sum(per_sample * confident * weight),
                                                  tf.reduce_sum(weight))
            loss = sup_loss + p.cons_weight * cons_loss
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        if self.teacher is not self.student:
            for t, s in zip(self.teacher.weights, self.student.weights):
                t.assign(p.teacher_alpha * t + (1 - p.teacher_alpha) * s)
        return {"sup_loss": sup_loss, "cons_loss": cons_loss, "conf_rate": conf_rate}

    def predict_probability(self, points, batch=65536):
        """Class-1 probability of the prediction net at normalised points (inference mode)."""
        out = [tf.nn.softmax(self.prediction_net(tf.constant(points[i:i + batch], tf.float32),
                                                 training=False))[:, 1].numpy()
               for i in range(0, len(points), batch)]
        return np.concatenate(out)
