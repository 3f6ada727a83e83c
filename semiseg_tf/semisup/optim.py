"""Optimisers and learning-rate schedules as the authors configure them."""
import math

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable("semiseg_tf")
class AuthorsSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`none`, `poly`, `cosine` or `stepped`, as a function of the 0-based step before the update.

    - poly: base * (1 - min(step / total, 1)) ** power
    - cosine: base * (1 + cos(pi * step / total)) / 2
    - stepped: base * gamma ** (number of boundaries <= step); boundaries are in steps (the authors'
      epoch milestones times their iterations per epoch).
    """

    def __init__(self, kind, base_lr, total_steps, poly_power=0.9, step_boundaries=(), step_gamma=0.1):
        self.kind = kind
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.poly_power = float(poly_power)
        self.step_boundaries = tuple(int(b) for b in step_boundaries)
        self.step_gamma = float(step_gamma)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        base = tf.constant(self.base_lr, tf.float32)
        if self.kind == "poly":
            progress = tf.minimum(step / self.total_steps, 1.0)
            return base * tf.pow(1.0 - progress, self.poly_power)
        if self.kind == "cosine":
            return base * (1.0 + tf.cos(math.pi * step / self.total_steps)) / 2.0
        if self.kind == "stepped":
            passed = tf.reduce_sum(tf.cast(
                tf.constant(self.step_boundaries, tf.float32) <= step, tf.float32))
            return base * tf.pow(self.step_gamma, passed)
        return base

    def get_config(self):
        return {"kind": self.kind, "base_lr": self.base_lr, "total_steps": self.total_steps,
                "poly_power": self.poly_power, "step_boundaries": list(self.step_boundaries),
                "step_gamma": self.step_gamma}


class LearningRateGroupsMixin:
    """Per-variable multipliers of the learning rate: PyTorch's parameter groups in one optimiser.

    The paper trains the pretrained backbone at 0.1 of the head's rate. Scaling the gradient instead
    would be the same for SGD but not for Adam, which divides the scale out; so the rate handed to the
    optimiser's `update_step` is scaled, per variable. One optimiser keeps one step count and one set of
    slots in the checkpoint. Works under tf.distribute: variables are matched by the optimiser's own
    key, which maps a replica's copy to its distributed variable.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lr_factors = {}  # optimiser's variable key -> factor; absent: 1
        self._update_repeats = {}  # optimiser's variable key -> updates per step; absent: 1
        self._repeats_weight_decay = 0.0

    def scale_learning_rate(self, variables, factor):
        """From now on `variables` are updated at `factor` times the scheduled rate."""
        for variable in variables:
            self._lr_factors[self._var_key(variable)] = float(factor)

    def learning_rate_factor(self, variable):
        return self._lr_factors.get(self._var_key(variable), 1.0)

    def repeat_updates(self, multiplicities, coupled_weight_decay=0.0):
        """Applies each step's update to a variable k times, for `(variable, k)` in `multiplicities`,
        as PyTorch (1.4, the authors') does for a parameter listed k times in a parameter group: the
        same gradient each time, and the one per-parameter state (momentum; Adam's moments and step
        count) advanced k times. `coupled_weight_decay`: the L2 coefficient already in the gradient
        (the trainer's SGD weight decay); PyTorch recomputes it from the moved weight for each
        copy, so each further copy adds it times the distance moved so far."""
        for variable, count in multiplicities:
            if int(count) != count or count < 1:
                raise ValueError(f"update multiplicity of {variable.path} must be a positive integer, "
                                 f"not {count}")
            self._update_repeats[self._var_key(variable)] = int(count)
        self._repeats_weight_decay = float(coupled_weight_decay)

    def update_repeats(self, variable):
        return self._update_repeats.get(self._var_key(variable), 1)

    def update_step(self, gradient, variable, learning_rate):
        factor = self.learning_rate_factor(variable)
        if factor != 1.0:
            learning_rate = learning_rate * factor
        repeats = self.update_repeats(variable)
        if repeats == 1:
            return self._single_update(gradient, variable, learning_rate)
        start = tf.identity(variable)
        for copy in range(repeats):
            copy_gradient = gradient
            if copy and self._repeats_weight_decay:
                copy_gradient = gradient + self._repeats_weight_decay * tf.cast(
                    variable - start, gradient.dtype)
            self._one_of_repeated_updates(copy_gradient, variable, learning_rate, copy, repeats)
        return None

    def _single_update(self, gradient, variable, learning_rate):
        """The optimiser's own update (at the variable's scaled rate); Adam overrides it."""
        super().update_step(gradient, variable, learning_rate)

    def _one_of_repeated_updates(self, gradient, variable, learning_rate, copy, repeats):
        """Copy `copy` (0-based) of `repeats` updates of one step; optimisers whose update depends
        on the step count override this."""
        super().update_step(gradient, variable, learning_rate)


class GroupedAdam(LearningRateGroupsMixin, keras.optimizers.Adam):
    """Adam with per-variable learning-rate multipliers, stepping as PyTorch's `torch.optim.Adam`.

    Keras's Adam adds epsilon to sqrt(v) before the bias correction, PyTorch's after it:
    lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). Keras's epsilon is thus 1 / sqrt(1 - b2^t)
    times larger in PyTorch's terms (31.6x at the first step, 3.2x at step 50, 1x from a few
    thousand on), which damps the early steps of weights whose gradients are small. In the 2-D toy
    that moved the first step's weights by up to 1.4e-4 away from PyTorch's (5e-7 with this rule;
    `benchmarks/toy_vs_torch.py compare`). The authors trained with PyTorch's rule, so it is the rule
    here.
    """

    def __init__(self, *args, decoupled_weight_decay=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if self.amsgrad:
            raise NotImplementedError("GroupedAdam has no AMSGrad")
        # AdamW's (PyTorch's `torch.optim.AdamW`): the weight shrunk by lr x decay before each step.
        self.decoupled_weight_decay = float(decoupled_weight_decay)

    def _single_update(self, gradient, variable, learning_rate):
        self._torch_adam_update(gradient, variable, learning_rate,
                                tf.cast(self.iterations + 1, variable.dtype))

    def _one_of_repeated_updates(self, gradient, variable, learning_rate, copy, repeats):
        # The variable's own step count, as PyTorch keeps it per parameter: `repeats` counts a step,
        # so copy j of step t (0-based) is count t k + j + 1.
        self._torch_adam_update(gradient, variable, learning_rate,
                                tf.cast(self.iterations * repeats + copy + 1, variable.dtype))

    def _torch_adam_update(self, gradient, variable, learning_rate, local_step):
        dtype = variable.dtype
        lr = tf.cast(learning_rate, dtype)
        gradient = tf.cast(gradient, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        if self.decoupled_weight_decay:
            self.assign_sub(variable, lr * self.decoupled_weight_decay * variable)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, (gradient - m) * (1 - beta_1))
        self.assign_add(v, (tf.square(gradient) - v) * (1 - beta_2))
        denominator = tf.sqrt(v) / tf.sqrt(1 - tf.pow(beta_2, local_step)) + self.epsilon
        self.assign_sub(variable, lr / (1 - tf.pow(beta_1, local_step)) * m / denominator)


class GroupedSGD(LearningRateGroupsMixin, keras.optimizers.SGD):
    """SGD with per-variable learning-rate multipliers."""


def build_optimizer(kind, schedule, sgd_momentum=0.9, sgd_nesterov=False, adamw_weight_decay=0.01):
    """Adam with PyTorch's defaults (no weight decay), AdamW (PyTorch's, decoupled decay
    `adamw_weight_decay` at each variable's own rate) or SGD with momentum, all with learning-rate
    groups (`LearningRateGroupsMixin.scale_learning_rate`).

    Adam's step is PyTorch's (see `GroupedAdam`).

    SGD weight decay is not set here: the trainer adds it to the gradient as L2, like PyTorch's
    `weight_decay`, instead of Keras's decoupled decay. Keras keeps `lr * gradient` in its momentum
    buffer where PyTorch keeps the gradient and multiplies by the current rate: the same steps at a
    constant rate, slightly different ones while a schedule changes the rate.
    """
    if kind == "adam":
        return GroupedAdam(learning_rate=schedule, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    if kind == "adamw":
        return GroupedAdam(learning_rate=schedule, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                           decoupled_weight_decay=adamw_weight_decay)
    if kind == "sgd":
        return GroupedSGD(learning_rate=schedule, momentum=sgd_momentum, nesterov=sgd_nesterov)
    raise ValueError(f"unknown optimiser {kind!r}")
