"""The run's guarantees as Keras callbacks: `python -m semiseg_tf.train` trains with
`MeanTeacher.fit` and these, and a Python user can add them to their own `fit`.

Each acts after a step (`on_train_batch_end`); the step's number is the model's step count. In
the trainer's order: progress lines, the stop request, pictures, evaluation, checkpoints.
"""
import time

import keras
import tensorflow as tf

from semiseg_tf.errors import TrainingDiverged
from semiseg_tf.semisup import mean_teacher
from semiseg_tf.training import run_folder

# The longest a training goes without a progress line (besides `ProgressLog`'s `every`).
LOG_SECONDS = 60


def format_duration(seconds):
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class StepCallback(keras.callbacks.Callback):
    """A callback that knows each step's number: the model's step count when training began,
    plus the batches since."""

    def on_train_begin(self, logs=None):
        self.first_step = int(self.model.step.numpy()) + 1

    def step_of(self, batch):
        return self.first_step + batch


class NonFiniteGuard(StepCallback):
    """Stops training (TrainingDiverged) at a step whose loss or gradient was not finite, or,
    when the model skips such steps (`skip_nonfinite`), reports those skipped since the last
    report; every `every` steps, and whenever another callback is about to save or score
    (`check`, which also checks every weight). `latest_checkpoint`: a function naming the last
    good state for the message."""

    def __init__(self, every, say=print, latest_checkpoint=lambda: None):
        super().__init__()
        self.every, self.say, self.latest_checkpoint = every, say, latest_checkpoint
        self.reported = 0
        self._weights_finite = None
        self._checked_step = None

    def on_train_batch_end(self, batch, logs=None):
        if self.step_of(batch) % self.every == 0:
            self.check_steps()

    def check_steps(self):
        model = self.model
        count = int(model.nonfinite_steps.numpy())
        if count == self.reported:
            return
        first = int(model.first_nonfinite_step.numpy())
        what = mean_teacher.describe_nonfinite(model.first_nonfinite_what.numpy())
        if not model.skip_nonfinite:
            raise TrainingDiverged(
                f"step {first}: {what} became non-finite (nan or inf); the run stops without "
                f"saving, so its latest checkpoint ({self.latest_checkpoint() or 'none yet'}) is "
                "its last good state. Lower --learning_rate, or let it skip such steps with "
                "--on_nonfinite=skip")
        self.say(f"warning: {count - self.reported} step(s) skipped, whose loss or gradient was "
                 f"not finite ({count} in this session; the first, step {first}: {what})")
        self.reported = count

    def check(self, step):
        """Before anything is scored or saved: the steps, and every weight, batch-norm statistic
        and optimiser slot (an update can overflow with a finite loss and gradient)."""
        self.check_steps()
        if self._checked_step == step:
            return
        model = self.model
        if self._weights_finite is None:
            variables = [v for v in (model.student.weights + model.teacher.weights
                                     + model.optimizer.variables)
                         if keras.backend.is_float_dtype(v.dtype)]
            self._weights_finite = tf.function(lambda: tf.reduce_all(tf.stack(
                [tf.reduce_all(tf.math.is_finite(v)) for v in variables])))
        if not bool(self._weights_finite()):
            raise TrainingDiverged(
                f"step {step}: the weights are not finite (nan or inf), from an update that "
                "overflowed; the run stops without saving, so its latest "
                f"checkpoint ({self.latest_checkpoint() or 'none yet'}) is its last good "
                "state. Lower --learning_rate")
        self._checked_step = step


class ProgressLog(StepCallback):
    """A line every `every` steps, after the first, at the last (`end`), and whenever
    LOG_SECONDS passed without one (slow steps still show progress): the losses, the confident
    share, the learning rate, the speed and the time left; the same values into `writer`."""

    def __init__(self, total_steps, end, every, writer, guard, say=print):
        super().__init__()
        self.total_steps, self.end, self.every = total_steps, end, every
        self.writer, self.guard, self.say = writer, guard, say

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.started = self.last_line = time.perf_counter()
        # The speed is timed from the end of the first step, which also traces the step
        # function: counted in, it would make the first ETA far too long.
        self.window_start, self.window_steps = None, 0

    def on_train_batch_end(self, batch, logs=None):
        step = self.step_of(batch)
        now = time.perf_counter()
        if self.window_start is None:
            self.window_start = now           # its logs were read, so the step has finished
        else:
            self.window_steps += 1
        if not (step % self.every == 0 or step == self.end or step == self.first_step
                or now - self.last_line >= LOG_SECONDS):
            return
        self.last_line = now
        self.guard.check_steps()
        rate = self.window_steps / (now - self.window_start) if self.window_steps else None
        if self.window_steps:
            self.window_start, self.window_steps = now, 0
        speed = (f"{rate:.1f} steps/s  ETA {format_duration((self.end - step) / rate)}"
                 if rate else "(timing from the next step)")
        scaling = ""
        if "loss_scale" in logs:
            overflows = int(self.model.overflow_steps.numpy())
            scaling = f"loss scale {logs['loss_scale']:.0f} ({overflows} overflow skips)  "
        self.say(f"step {step}/{self.total_steps}  sup {logs['sup_loss']:.4f}  "
                 f"cons {logs['cons_loss']:.5f}  conf {logs['conf_share']:.3f}  "
                 f"lr {logs['learning_rate']:.2e}  {scaling}{speed}")
        with self.writer.as_default(step=step):
            for name, value in logs.items():
                tf.summary.scalar(name, value)
            if rate:
                tf.summary.scalar("steps_per_second", rate)
            tf.summary.scalar("skipped_steps", self.guard.reported)

    def on_train_end(self, logs=None):
        self.trained_for = time.perf_counter() - self.started


class StopOnRequest(StepCallback):
    """Ends training after the step in which `requests` (a `stops.StopRequests`) got SIGTERM or
    Ctrl-C. With several workers (`shared`), after the step whose combined request says one of
    them was, all alike. `stopped_at`: (step, signal name) once it stopped training."""

    def __init__(self, requests, shared=False):
        super().__init__()
        self.requests, self.shared = requests, shared
        self.stopped_at = None

    def on_train_batch_begin(self, batch, logs=None):
        if self.shared:
            self.model.stop_request.assign(float(self.requests.signal_name is not None))

    def on_train_batch_end(self, batch, logs=None):
        stopping = self.requests.signal_name is not None
        if self.shared:
            stopping = logs["stop"] > 0
            if stopping and not self.requests.signal_name:
                self.requests.signal_name = "SIGTERM"      # another worker's
        if stopping:
            self.model.stop_training = True
            self.stopped_at = (self.step_of(batch), self.requests.signal_name)


class ConsistencyPanels(StepCallback):
    """Every `every` steps, pictures of the consistency inputs and outputs (`Reports`)."""

    def __init__(self, reports, every):
        super().__init__()
        self.reports, self.every = reports, every

    def on_train_batch_end(self, batch, logs=None):
        step = self.step_of(batch)
        if self.every and step % self.every == 0:
            self.reports.write_panels(step)


class PeriodicEvaluation(StepCallback):
    """Scores the teacher every `every` steps and at `total_steps`, appending to `history` (kept
    in the run folder `workdir`)."""

    def __init__(self, reports, every, total_steps, history, workdir, guard):
        super().__init__()
        self.reports, self.every, self.total_steps = reports, every, total_steps
        self.history, self.workdir, self.guard = history, workdir, guard

    def on_train_batch_end(self, batch, logs=None):
        step = self.step_of(batch)
        if step % self.every == 0 or step == self.total_steps:
            self.guard.check(step)               # nothing non-finite is ever scored
            self.history.append({"step": step, **self.reports.evaluate(step)})
            run_folder.save_history(self.workdir, self.history)


class PeriodicCheckpoints(StepCallback):
    """Saves a checkpoint into `store` (a `CheckpointStore`) every `every` steps, at `end`, and
    at a step after which training stops."""

    def __init__(self, store, every, end, guard):
        super().__init__()
        self.store, self.every, self.end, self.guard = store, every, end, guard

    def on_train_batch_end(self, batch, logs=None):
        step = self.step_of(batch)
        if step % self.every == 0 or step == self.end or self.model.stop_training:
            self.guard.check(step)               # nothing non-finite is ever saved
            self.store.save(step)
