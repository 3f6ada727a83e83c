"""The one trainer: a Keras model holding student and EMA teacher, with a custom `train_step`.

One step: cross-entropy on the labelled batch; if `cons_weight > 0`, the perturbation's
consistency loss on the unlabelled batches, weighted by the share of confident teacher pixels (or masked
per pixel) and by the ramp-up; one optimiser update of the student; then teacher <- alpha * teacher +
(1 - alpha) * student over every float weight, batch-norm moving statistics included. A `cons_weight` of
0 is the supervised baseline through the same code. The Pi-model is the same step with the student as
its own teacher (no EMA). Correct under `tf.distribute`: see `losses.py` for how losses are scaled.
A step whose loss or gradient is not finite (nan or inf, on any replica) applies neither the update
nor the EMA; it is counted, for the trainer to stop the run or go on (`skip_nonfinite`).
With a `keras.optimizers.LossScaleOptimizer` (--mixed_precision=float16) the loss is scaled before
the gradient; a step whose losses are finite but whose scaled gradient overflows is the optimiser's
business, not a divergence: it is skipped (no update, no EMA, batch-norm statistics put back), the
scale halved, and `overflow_steps` counts it.
"""
import keras
import tensorflow as tf

from semiseg_tf import inference, metrics, models
from semiseg_tf.data import base
from semiseg_tf.semisup import losses


class MeanTeacher(keras.Model):
    """Student, teacher and the training step.

    Args:
      student, teacher: two networks of the same architecture; the teacher starts as a copy.
      perturbation: a `methods.base.Perturbation`, or None for the supervised baseline.
      cons_weight: weight of the consistency loss (0: supervised baseline).
      conf_thresh: teacher confidence threshold; 0 turns confidence weighting off.
      teacher_alpha: EMA decay of the teacher.
      teacher_alpha_warmup: after the t-th update (t from 1) the decay is min(1 - 1/t,
        teacher_alpha), the mean teacher's and UniMatch V2's warm-up (the first update copies).
      cons_loss_fn: name in `losses.CONSISTENCY_LOSSES`.
      weight_decay: L2 coefficient added to the gradient (the authors' SGD `weight_decay`).
      conf_per_pixel: mask the loss per pixel by teacher confidence instead of scaling it by the
        confident share of the batch.
      rampup_steps: sigmoid ramp-up of the consistency weight over this many steps (0: none).
      unsup_batch_ratio: consistency losses per step, each on its own slice of the unlabelled batches
        (the authors' repeated backward passes, summed).
      bn_stats_from_unlabelled: let the passes on unlabelled batches update the batch-norm moving
        statistics of student and teacher, as the authors' code does. False keeps the statistics the
        labelled pass leaves (the teacher's are then the EMA of the student's).
      skip_nonfinite: a step whose loss or gradient is not finite changes nothing either way (no
        update, no EMA; `nonfinite_steps` counts it and the first is recorded). True also puts back
        the batch-norm moving statistics its forward passes changed, so training can go on; False
        (the trainer then stops the run) leaves them, as they will not be saved.
      sup_weight: weight of the supervised loss (FixMatch and UniMatch halve both losses).
      cons_average: what the consistency loss's sum is divided by: "pixels", every pixel of the
        batch (the paper's authors); "valid", the pixels the perturbation's loss mask counts
        (FixMatch's and UniMatch's, whose mask is the valid pixels); "confident", the counted pixels
        where the teacher is confident (with `conf_per_pixel`).
      rgb_mean, rgb_std: the normalisation of the training images (RGB in [0, 1]), for
        `evaluate` and `predict`, which take raw pixels.
      input_multiple: image sides the network takes are multiples of this (`evaluate` and `predict`
        pad to it); None: what `models.build` recorded on the network, else 1.
      class_weights: None, or one weight per class for the supervised cross-entropy (see
        `semisup.class_weights` for weights from the labelled masks' pixel counts).
      ohem_thresh, ohem_min_kept: online hard example mining of the supervised loss, as UniMatch's
        (`losses.ohem_kept`); `ohem_thresh` 1 mines nothing.
    Pass `teacher=student` for the Pi-model: targets come from the student itself (without gradient)
    and there is no EMA.

    With Keras: `compile(optimizer=...)`, then `fit` on batches of `semiseg_tf.training_batches`;
    `evaluate` on (image, label) batches of raw pixels (uint8, or float in [0, 1]) reports the
    teacher's `miou` and `pixel_accuracy` through the one inference path (`inference.Segmenter`);
    `predict` on raw pixels gives the teacher's class probabilities; calling the model on
    normalised images gives the teacher's logits.
    """

    def __init__(self, student, teacher, perturbation=None, cons_weight=1.0, conf_thresh=0.97,
                 teacher_alpha=0.99, teacher_alpha_warmup=False, cons_loss_fn="var",
                 weight_decay=0.0, conf_per_pixel=False,
                 rampup_steps=0, unsup_batch_ratio=1, bn_stats_from_unlabelled=True,
                 skip_nonfinite=False, sup_weight=1.0, cons_average="pixels",
                 rgb_mean=base.IMAGENET_MEAN, rgb_std=base.IMAGENET_STD, input_multiple=None,
                 class_weights=None, ohem_thresh=1.0, ohem_min_kept=200000, **kwargs):
        super().__init__(**kwargs)
        self.rgb_mean, self.rgb_std = tuple(rgb_mean), tuple(rgb_std)
        self.input_multiple = int(input_multiple or models.input_multiple_of(teacher))
        self.student = student
        self.teacher = teacher
        self.perturbation = perturbation
        self.cons_weight = float(cons_weight)
        self.conf_thresh = float(conf_thresh)
        self.teacher_alpha = float(teacher_alpha)
        self.teacher_alpha_warmup = bool(teacher_alpha_warmup)
        self.cons_loss = losses.CONSISTENCY_LOSSES[cons_loss_fn]
        self.weight_decay = float(weight_decay)
        self.conf_per_pixel = bool(conf_per_pixel)
        self.rampup_steps = int(rampup_steps)
        self.unsup_batch_ratio = int(unsup_batch_ratio)
        self.bn_stats_from_unlabelled = bool(bn_stats_from_unlabelled)
        self.skip_nonfinite = bool(skip_nonfinite)
        self.sup_weight = float(sup_weight)
        self.class_weights = None if class_weights is None else tuple(map(float, class_weights))
        if not 0 < ohem_thresh <= 1 or ohem_min_kept < 0:
            raise ValueError(f"ohem_thresh must lie in (0, 1] and ohem_min_kept be >= 0, not "
                             f"{ohem_thresh} and {ohem_min_kept}")
        self.ohem = None if ohem_thresh >= 1 else (float(ohem_thresh), int(ohem_min_kept))
        if cons_average not in CONS_AVERAGES:
            raise ValueError(f"cons_average must be one of {', '.join(CONS_AVERAGES)}, not "
                             f"{cons_average!r}")
        if cons_average == "confident" and not (conf_per_pixel and conf_thresh > 0):
            raise ValueError("cons_average='confident' needs per-pixel confidence (conf_per_pixel "
                             "and a conf_thresh above 0)")
        self.cons_average = cons_average
        # Several workers: every step combines their stop requests (one small all-reduce).
        self.share_stop_requests = False
        # The teacher stays `trainable`: in Keras 3 a non-trainable BatchNormalization ignores
        # training=True and uses its moving statistics, but the authors' teacher runs with batch
        # statistics. It never gets gradients: the tape and the optimiser see student variables only.

    @property
    def num_classes(self):
        """The networks' number of output channels (classes)."""
        try:
            return int(self.teacher.output_shape[-1])
        except (AttributeError, ValueError):    # a subclassed network, built by a call
            return int(self.teacher.compute_output_shape((1, 64, 64, 3))[-1])

    @property
    def is_pi_model(self):
        return self.teacher is self.student

    @property
    def loss_scaled(self):
        return isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)

    @property
    def uses_unlabelled(self):
        return self.cons_weight > 0 and self.perturbation is not None

    def call(self, images, training=False):
        """The teacher is the network that is evaluated and exported."""
        return self.teacher(images, training=training)

    def segmenter(self):
        """The teacher on raw pixels: normalised, padded to the input multiple (`inference`)."""
        return inference.Segmenter(self.teacher, self.rgb_mean, self.rgb_std, self.input_multiple)

    def test_step(self, data):
        """Scores the teacher on (image, label) pairs (a tuple, or a dict with 'image' and 'label'
        as `pipeline.validation_dataset` gives), images as raw pixels."""
        images, labels = (data["image"], data["label"]) if isinstance(data, dict) else data[:2]
        probabilities = self.segmenter().probabilities(images)
        for metric in (self.miou, self.pixel_accuracy):
            metric.update_state(labels, probabilities)
        return {metric.name: metric.result() for metric in (self.miou, self.pixel_accuracy)}

    def predict_step(self, data):
        """The teacher's class probabilities [N, H, W, C] of raw pixels."""
        images = data["image"] if isinstance(data, dict) else (
            data[0] if isinstance(data, (tuple, list)) else data)
        return self.segmenter().probabilities(images)

    def compile(self, optimizer="sgd", jit_compile=False, **kwargs):
        """`keras.Model.compile`, then what training needs, so that `fit` runs with no other call:
        the teacher made an exact copy of the student, and the optimiser built over the student's
        variables alone (Keras would build it over the teacher's too). Networks that are not built
        yet (a subclassed network) wait for `build(image_shape)`. Call inside `strategy.scope()`.

        `jit_compile` is off unless asked for: Keras's "auto" would compile with XLA on a GPU,
        where this step's cross-replica choices need --jit_compile's own checks."""
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)
        if self.student.built and self.teacher.built:
            self._set_up()

    def build(self, image_shape):
        """Builds both networks for images of `image_shape` ((H, W, 3), or with a batch axis first),
        then as `compile`."""
        dummy = tf.zeros((1,) + tuple(image_shape)[-3:], tf.float32)
        self.student(dummy)
        self.teacher(dummy)
        self._set_up()

    def initialise(self, image_shape):
        """`build`, under the name older code used."""
        self.build(image_shape)

    def _set_up(self):
        if [w.shape for w in self.teacher.weights] != [w.shape for w in self.student.weights]:
            raise ValueError("student and teacher must be the same architecture")
        if not self.is_pi_model and not getattr(self, "_teacher_copied", False):
            # Once: compiling again later must not throw the trained teacher away.
            for teacher_var, student_var in zip(self.teacher.weights, self.student.weights):
                teacher_var.assign(student_var)
            self._teacher_copied = True
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.student.trainable_variables)
        if not hasattr(self, "nonfinite_steps"):
            # float16's loss-scale overflows (steps skipped by the optimiser's dynamic loss
            # scaling).
            self.overflow_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
            # Steps whose loss or gradient was not finite, and the first one's step and what (a
            # NONFINITE_* bit mask). Not checkpointed: they count within one process.
            self.nonfinite_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.first_nonfinite_step = tf.Variable(-1, dtype=tf.int64, trainable=False)
            self.first_nonfinite_what = tf.Variable(0, dtype=tf.int64, trainable=False)
            # Steps trained (skipped ones included), counted by `fit`'s step function: the run's
            # position, which the trainer checkpoints.
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            # Set to 1 on a worker asked to stop; with `share_stop_requests`, each step's logs
            # say whether any worker was (`stop`).
            self.stop_request = tf.Variable(0.0, trainable=False, name="stop_request")
            self.miou = metrics.MeanIoU(self.num_classes)
            self.pixel_accuracy = metrics.PixelAccuracy(self.num_classes)
        self.built = True

    def _ema_pairs(self):
        return [(t, s) for t, s in zip(self.teacher.weights, self.student.weights)
                if keras.backend.is_float_dtype(t.dtype)]

    def update_teacher(self):
        if self.is_pi_model:
            return
        alpha = self.teacher_alpha
        if self.teacher_alpha_warmup:
            # Called after the update, so `iterations` is t, this update's 1-based count.
            updates = tf.cast(self.optimizer.iterations, tf.float32)
            alpha = tf.minimum(1.0 - 1.0 / updates, alpha)
        for teacher_var, student_var in self._ema_pairs():
            teacher_var.assign(alpha * teacher_var + (1.0 - alpha) * student_var)

    def consistency(self, unlabelled):
        """Consistency loss of one unlabelled slice (this replica's share), confident share, terms.

        the per-pixel loss times the loss mask, averaged (`cons_average`: by default over
        every pixel); then either times the share of confident pixels of the whole batch (default),
        or with the loss mask also zero where the teacher is not confident (`conf_per_pixel`).
        The perturbation's losses (`WeightedTerms`; UniMatch has three) are summed by their
        weights; the share and the terms are the first one's.
        """
        streams = self.perturbation.consistency(self.student, self.teacher, unlabelled)
        total, share = None, None
        for stream in streams:
            loss, stream_share = self.terms_loss(stream.terms)
            weighted = loss if stream.weight == 1.0 else stream.weight * loss
            total = weighted if total is None else total + weighted
            share = stream_share if share is None else share
        return total, share, streams[0].terms

    def terms_loss(self, terms):
        """(loss, confident share) of one `ConsistencyTerms`."""
        per_pixel = self.cons_loss(terms.student_logits, terms.teacher_logits, terms.teacher_probs)
        counted, share = terms.loss_mask, tf.constant(1.0)
        if self.conf_thresh > 0:
            share = tf.stop_gradient(losses.confident_share(terms.teacher_confidence,
                                                            self.conf_thresh))
            if self.conf_per_pixel:
                counted = counted * tf.cast(terms.teacher_confidence >= self.conf_thresh, tf.float32)
        over = {"pixels": None, "valid": terms.loss_mask, "confident": counted}[self.cons_average]
        loss = losses.masked_average(per_pixel, counted, over)
        if self.conf_thresh > 0 and not self.conf_per_pixel:
            loss *= share
        return loss, share

    def _moving_statistics(self):
        """The batch-norm moving means and variances of student and teacher (once each for Pi)."""
        networks = [self.student] if self.is_pi_model else [self.student, self.teacher]
        return [v for net in networks for v in net.non_trainable_variables if "moving_" in v.path]

    def _unlabelled_slices(self, unlabelled):
        """Splits each unlabelled batch into `unsup_batch_ratio` equal slices (along the batch axis)."""
        if self.unsup_batch_ratio == 1:
            return [unlabelled]
        pieces = [tf.split(t, self.unsup_batch_ratio, axis=0) for t in tf.nest.flatten(unlabelled)]
        return [tf.nest.pack_sequence_as(unlabelled, [p[k] for p in pieces])
                for k in range(self.unsup_batch_ratio)]

    def train_step(self, data, step=None):
        """One training step (on one replica). `step`: its number, recorded if it is the first
        non-finite one (None: the one after `self.step`, which `fit`'s step function counts)."""
        step = self.step + 1 if step is None else step
        labelled = data["labelled"]
        student_vars = self.student.trainable_variables
        # A skipped step puts back what its forward passes changed; float16 skips its overflows.
        statistics_before = ([(v, tf.identity(v.value)) for v in self._moving_statistics()]
                             if self.skip_nonfinite or self.loss_scaled else [])
        # float16: gradients of the scaled losses, unscaled by the optimiser (weight decay too).
        scale = self.optimizer.dynamic_scale if self.loss_scaled else 1.0
        with tf.GradientTape() as tape:
            logits = self.student(labelled["image"], training=True)
            sup_loss = losses.cross_entropy(logits, labelled["label"], self.class_weights,
                                            self.ohem)
            scaled = self.sup_weight * sup_loss
            scaled = self.optimizer.scale_loss(scaled) if self.loss_scaled else scaled
        grads = tape.gradient(scaled, student_vars)
        cons_loss, conf_share = tf.constant(0.0), tf.constant(0.0)
        if self.uses_unlabelled:
            # The supervised gradient first, as the authors' loss.backward() on the labelled batch
            # before the unlabelled passes: the unlabelled batches wait for it (a graph runs ops
            # in any order its data allow), so the labelled pass's activations are freed before
            # theirs are made and the peak memory holds one pass's, not both.
            with tf.control_dependencies([g for g in grads if g is not None]):
                unlabelled_batches = tf.nest.map_structure(tf.identity, data["unlabelled"])
            with tf.GradientTape() as tape:
                # Taken after the labelled pass and restored after the unlabelled ones: inside a
                # tf.function stateful ops run in program order.
                saved = ([(v, tf.identity(v.value)) for v in self._moving_statistics()]
                         if not self.bn_stats_from_unlabelled else [])
                for unlabelled in self._unlabelled_slices(unlabelled_batches):
                    loss, share, _ = self.consistency(unlabelled)
                    cons_loss += loss
                    conf_share += share / self.unsup_batch_ratio
                # The ramp uses the 0-based index of this step (the optimiser's count before it).
                cons_loss *= losses.sigmoid_rampup(self.optimizer.iterations, self.rampup_steps)
                weighted = self.cons_weight * cons_loss
                if self.loss_scaled:
                    weighted = self.optimizer.scale_loss(weighted)
                for variable, value in saved:
                    variable.assign(value)
            grads = [_add(g, c) for g, c in zip(grads, tape.gradient(weighted, student_vars))]
        if self.weight_decay > 0:
            # Summed over replicas by the optimiser, so each replica adds its 1/N share.
            decay = self.weight_decay / losses.num_replicas() * scale
            grads = [g + decay * tf.cast(v, g.dtype) for g, v in zip(grads, student_vars)]
        learning_rate = self.optimizer.learning_rate
        nonfinite = nonfinite_flags(sup_loss, cons_loss, grads)
        finite = tf.logical_not(tf.reduce_any(nonfinite))
        self._update_if_finite(finite, nonfinite, grads, student_vars, step)
        for variable, value in statistics_before:
            variable.assign(tf.where(finite, variable, value))
        logs = {"sup_loss": losses.global_sum(sup_loss),
                "cons_loss": losses.global_sum(cons_loss),
                "conf_share": conf_share,
                "learning_rate": learning_rate,
                "nonfinite": tf.cast(tf.logical_not(finite), tf.float32)}
        if self.loss_scaled:
            logs["loss_scale"] = tf.identity(self.optimizer.dynamic_scale.value)
        return logs

    def fit(self, *args, shuffle=False, **kwargs):
        """`keras.Model.fit`, with `shuffle` off by default: the batches come from tf.data, which
        orders them itself (Keras ignores shuffle=True for a dataset, and warns)."""
        return super().fit(*args, shuffle=shuffle, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras builds a model here from one batch, read from the data and, under a strategy,
        # averaged over the replicas (which fails on nested batches under
        # MultiWorkerMirroredStrategy). `compile` or `build` built this one: nothing to do.
        if not self.built:
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def make_train_function(self, force=False):
        """What `fit` runs for each step: the step on every replica, with XLA when compiled with
        `jit_compile` (each replica's step, as Keras's own trainer), and the replicas' logs
        combined (each holds the global values, so their mean is that value)."""
        if self.train_function is not None and not force:
            return self.train_function
        strategy = self.distribute_strategy
        step = tf.function(self.train_step, jit_compile=True) if self.jit_compile else self.train_step

        @tf.function
        def train_function(iterator):
            per_replica = strategy.run(step, args=(next(iterator),))
            logs = {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                    for name, value in per_replica.items()}
            self.step.assign_add(1)
            if self.share_stop_requests:
                # Whether any worker was asked to stop (SIGTERM reaches the workers one by one):
                # all must stop after the same step, or the others would wait for it forever.
                requests = strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
                    tf.distribute.ReduceOp.SUM, tf.identity(self.stop_request)))
                logs["stop"] = strategy.experimental_local_results(requests)[0]
            return logs
        self.train_function = train_function
        return train_function

    def _apply_update(self, grads, variables):
        if self.loss_scaled:
            # What LossScaleOptimizer.apply does with finite gradients (unscale, the inner
            # optimiser's update, grow the scale every `dynamic_growth_steps`), called here because
            # the finiteness test, and the EMA with it, is this step's (keras 3.15).
            self.optimizer._stateful_handle_finite_grads(grads, variables)
        else:
            self.optimizer.apply_gradients(zip(grads, variables))
        self.update_teacher()

    def _skip_update(self, nonfinite, step):
        """A step that changes no weight: a float16 overflow (finite losses, scaled gradient not
        finite) halves the loss scale and is counted apart; anything else is a non-finite step."""
        if not self.loss_scaled:
            self._record_nonfinite(nonfinite, step)
            return
        overflow = tf.logical_and(nonfinite[2], tf.logical_not(tf.reduce_any(nonfinite[:2])))

        def skip_overflow():
            self.optimizer._stateful_handle_non_finite_grads()
            self.overflow_steps.assign_add(1)
        tf.cond(overflow, skip_overflow, lambda: self._record_nonfinite(nonfinite, step))

    def _record_nonfinite(self, nonfinite, step):
        first = self.first_nonfinite_step < 0
        bits = tf.reduce_sum(tf.cast(nonfinite, tf.int64) * tf.constant(NONFINITE_BITS, tf.int64))
        self.first_nonfinite_step.assign(
            tf.where(first, tf.cast(step, tf.int64), self.first_nonfinite_step))
        self.first_nonfinite_what.assign(tf.where(first, bits, self.first_nonfinite_what))
        self.nonfinite_steps.assign_add(1)

    def _update_if_finite(self, finite, nonfinite, grads, variables, step):
        """The optimiser update and the EMA if `finite` (the same on every replica), else counts.

        Under MirroredStrategy the choice is made in cross-replica context, as Keras's
        LossScaleOptimizer makes it: a cond in replica context cannot hold the optimiser's
        merge_call.
        """
        if tf.__internal__.distribute.strategy_supports_no_merge_call():
            tf.cond(finite, lambda: self._apply_update(grads, variables),
                    lambda: self._skip_update(nonfinite, step))
            return

        def cross_replica(distribution, grads, finite, nonfinite, step):
            first = distribution.experimental_local_results

            def apply():
                distribution.extended.call_for_each_replica(self._apply_update,
                                                            args=(grads, variables))
            tf.cond(first(finite)[0], apply,
                    lambda: self._skip_update(first(nonfinite)[0], first(step)[0]))
        tf.distribute.get_replica_context().merge_call(
            cross_replica, args=(grads, finite, nonfinite, tf.convert_to_tensor(step)))


# What the consistency loss is averaged over (`MeanTeacher`'s `cons_average`).
CONS_AVERAGES = ("pixels", "valid", "confident")


def _add(a, b):
    """a + b, where either may be None (a variable one of the losses does not reach)."""
    return b if a is None else a if b is None else a + b


# What went non-finite in a step, as bits of `first_nonfinite_what` (and its name for messages).
NONFINITE_PARTS = ("supervised loss", "consistency loss", "gradient")
NONFINITE_BITS = (1, 2, 4)


def nonfinite_flags(sup_loss, cons_loss, grads):
    """bool [3]: whether the supervised loss, the consistency loss, the gradients hold a nan or inf
    on any replica (one all-reduce, so every replica decides alike)."""
    grads_finite = tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(g))
                                           for g in grads if g is not None]))
    local = tf.stack([tf.logical_not(tf.math.is_finite(sup_loss)),
                      tf.logical_not(tf.math.is_finite(cons_loss)),
                      tf.logical_not(grads_finite)])
    return losses.global_sum(tf.cast(local, tf.float32)) > 0


def describe_nonfinite(bits):
    """'the supervised loss, the consistency loss and the gradient' from a NONFINITE_BITS mask."""
    parts = [f"the {name}" for name, bit in zip(NONFINITE_PARTS, NONFINITE_BITS) if int(bits) & bit]
    if not parts:
        return "a value"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
