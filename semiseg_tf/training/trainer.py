"""The training run: `Trainer(cfg, flagfile_text).run()` builds everything from a `Config`, then
trains with `MeanTeacher.fit` and the callbacks of `callbacks.py`, then scores the teacher.

The input pipeline is a pure function of the step (see data/pipeline.py), so the checkpointed step
is the whole input state: running the same command again continues exactly where the run stopped.
"""
import dataclasses
import functools
import json
import os
import shutil
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

from semiseg_tf import checkpoints
from semiseg_tf import config as config_lib
from semiseg_tf import catalog, models, run_info
from semiseg_tf.augment import colour_cue
from semiseg_tf.data import pipeline
from semiseg_tf.errors import WorkerLost
from semiseg_tf.evaluation import Evaluator
from semiseg_tf.semisup import class_weights
from semiseg_tf.files import atomic_write_bytes
from semiseg_tf.models import precision
from semiseg_tf.options import strong_augmentation
from semiseg_tf.training import builders, callbacks, devices, run_folder
from semiseg_tf.training.checkpoint_store import CheckpointStore
from semiseg_tf.training.reporting import Reports
from semiseg_tf.training.stops import StopRequests


@dataclasses.dataclass(frozen=True)
class RunResult:
    """How a call of `Trainer.run` ended.

    `finished`: the run reached --train_steps; then, on the chief, `scores` holds the final
    evaluation as written to metrics.json (mIoU, per-class IoU, ...; `scores["test"]` when there is
    a test set). Otherwise it paused at `step`: at --stop_at_step, or stopped by the signal
    `stopped_by` ('SIGTERM', 'SIGINT'). `worker`: the name of a multi-worker run's worker other than
    the chief, which trains but neither evaluates nor writes.
    """
    step: int
    workdir: str
    finished: bool
    eval_history: list
    scores: dict = None
    stopped_by: str = None
    worker: str = None

    @property
    def miou(self):
        return self.scores["miou"]


class Trainer:
    """One run. `Trainer(cfg, flagfile_text).run()` trains to `cfg.training.steps`; a RunResult.

    Under --strategy=multi_worker every worker runs one; the chief (`is_chief`) alone writes the
    run folder (flags, run.json, TensorBoard, evaluations, checkpoints, metrics) and evaluates; the
    others train in step with it and save their checkpoints to a temporary folder of their own,
    as TensorFlow's multi-worker guide requires (saving is collective), deleted at the end.
    """

    def __init__(self, cfg, flagfile_text, out=None):
        # sys.stdout when made, not when this module was imported: a caller's redirection holds.
        self.cfg, self.out, self.workdir = cfg, out or sys.stdout, cfg.run.workdir
        # --- the devices: MultiWorkerMirroredStrategy must be made before TensorFlow runs anything.
        self.strategy = devices.make_strategy(cfg)
        self.is_chief = self.strategy.extended.should_checkpoint
        self.multi_worker = devices.is_multi_worker(self.strategy)
        self.worker_name = None
        if self.multi_worker:
            resolver = self.strategy.cluster_resolver
            self.worker_name = f"{resolver.task_type} {resolver.task_id}"
        # --- the run folder, checked and locked.
        if self.is_chief:
            run_folder.make_workdir(self.workdir)
        resume_notes = run_folder.check_workdir_flags(self.workdir, flagfile_text, cfg)
        if self.is_chief:
            run_folder.lock_workdir(self.workdir)
        try:
            self._build(flagfile_text)
        except BaseException:
            run_folder.release_workdir(self.workdir)
            raise
        for note in resume_notes:
            self.say(note)

    def _build(self, flagfile_text):
        cfg = self._resolve_precision()
        devices.check_jit_compile(cfg, self.strategy)
        self._check_batch_divides()
        keras.utils.set_random_seed(cfg.training.seed)
        # --- data, model, and what describes the run.
        self.source = builders.build_source(cfg, out=self.out)
        if cfg.evaluation.bin_fill_holes and self.source.num_classes != 2:
            raise config_lib.ConfigError(
                f"--bin_fill_holes: needs a two-class dataset; {cfg.data.dataset} has "
                f"{self.source.num_classes} classes")
        if cfg.strong_augmentation.colour and not self.source.pixels.photo:
            raise config_lib.ConfigError(
                f"--aug_strong_colour: colour jitter needs 8-bit RGB images; the images of "
                f"{cfg.data.dataset} have {self.source.pixels} (add --noaug_strong_colour)")
        labelled, unlabelled = self.source.labelled_split(cfg.labelled.n_sup, cfg.labelled.split_seed)
        self._warn_small_images()
        self._warn_colour_cue(labelled)
        weights = self._class_weights(labelled)
        with self.strategy.scope():
            self.model = builders.build_model(cfg, self.source.num_classes, self.source.rgb_mean,
                                              self.source.rgb_std, class_weights=weights,
                                              pixels=self.source.pixels)
        self.model.share_stop_requests = self.multi_worker
        self._warn_untrained_backbone()
        # Written once the flags, the data and the weights have been checked: a command that
        # failed on them leaves the folder as it was.
        self.info = run_info.from_run(cfg, self.source)
        if self.is_chief:
            atomic_write_bytes(os.path.join(self.workdir, run_folder.FLAGS_FILE),
                               flagfile_text.encode())
            run_info.write(self.workdir, self.info)
        self.pipeline = pipeline.InputPipeline(
            self.source, labelled, unlabelled, builders.pipeline_params(cfg),
            perturbation=self.model.perturbation if self.model.uses_unlabelled else None)
        # --- checkpoints: a worker's own folder for those it must write but nobody reads.
        self._worker_checkpoints = None if self.is_chief else tempfile.mkdtemp(
            prefix=f"semiseg_tf-{self.worker_name.replace(' ', '-')}-")
        run_checkpoint = checkpoints.RunCheckpoint(
            student=self.model.student, teacher=self.model.teacher, optimizer=self.model.optimizer,
            step=self.model.step)
        folder = os.path.join(self.workdir, run_folder.CHECKPOINTS_DIR)
        self.checkpoints = CheckpointStore(run_checkpoint, self._worker_checkpoints or folder,
                                           cfg.logs.keep_checkpoints, read_folder=folder, say=self.say)
        # --- evaluation and reports.
        multiple = models.input_multiple(cfg.network.arch)
        # Validation runs one pass up to the default whatever the network, as the papers did: the
        # memory of a training process is its training step's, not the serving bound's.
        options = config_lib.inference_options(cfg).resolved()
        evaluation = dict(batch_size=cfg.inference.eval_batch_size, multiple=multiple,
                          fill_holes=cfg.evaluation.bin_fill_holes, options=options,
                          jit_compile=cfg.distribution.jit_compile)
        evaluator = Evaluator(self.source, **evaluation)
        test_set = self.source.test()
        self.test_evaluator = None if test_set is None else Evaluator(self.source, **evaluation,
                                                                      dataset=test_set)
        self.reports = Reports(cfg, self.source, self.model, evaluator, self.pipeline,
                               flagfile_text, self.is_chief, self.say)

    def _resolve_precision(self):
        """self.cfg with --mixed_precision=auto made bfloat16 or float32 for these devices, said."""
        requested = self.cfg.distribution.mixed_precision
        chosen, why = precision.resolve(requested)
        if requested == "auto":
            self.say(f"--mixed_precision=auto: {chosen}, since {why}")
            self.cfg = dataclasses.replace(self.cfg, distribution=dataclasses.replace(
                self.cfg.distribution, mixed_precision=chosen))
        return self.cfg

    def _class_weights(self, labelled):
        """--class_weights for this run's labelled images (None for none), announced."""
        spec = self.cfg.supervised.class_weights
        counts = self.source.class_pixel_counts()
        weights = class_weights.for_run(spec, self.source.num_classes,
                                        None if counts is None else counts[labelled])
        if weights is not None:
            origin = (f"{spec} frequency of the {len(labelled)} labelled masks' pixels"
                      if spec in class_weights.KINDS else spec)
            shown = "  ".join(f"{n} {w:.3g}" for n, w in zip(self.source.class_names, weights))
            self.say(f"class weights ({origin}): {shown}")
        return weights

    def _warn_small_images(self):
        """A warning when training images are smaller than the crop (they are padded, which is
        legitimate, but often a mistake: a crop meant for other data)."""
        sizes = self.source.train_image_sizes()
        if sizes is None or not len(sizes):
            return
        crop_h, crop_w = self.cfg.augmentation.crop_size
        small = (sizes[:, 0] < crop_h) | (sizes[:, 1] < crop_w)
        if small.any():
            smallest = sizes[np.argmin(sizes[:, 0] * sizes[:, 1])]
            self.say(f"warning: --crop_size={crop_h},{crop_w} is larger than {int(small.sum())} "
                     f"of the {len(sizes)} training images (the smallest is "
                     f"{smallest[0]}x{smallest[1]}, height x width): their crops are padded with "
                     "the mean colour and ignored labels")

    def _warn_colour_cue(self, labelled):
        """A warning when the student's colour jitter contradicts classes that colour tells apart
        (augment/colour_cue.py): measured on the labelled images, before any training."""
        params = self.cfg.strong_augmentation.colour_params()
        if params is None or self.cfg.method.cons_weight == 0:
            return
        result = colour_cue.check_source(self.source, labelled, params)
        if result.cue.contradicted:
            self.say("warning: " + colour_cue.report(result, "this run's strong view",
                                                     strong_augmentation.TOPIC.fields))

    def _warn_untrained_backbone(self):
        """A warning when a network whose recipes start from ImageNet weights trains without them:
        from random weights it needs far more labels and steps (the small variants never have
        pretrained weights, and are meant to train without)."""
        cfg = self.cfg
        arch = cfg.network.arch
        network = catalog.network(arch)
        if not cfg.network.backbone_weights and network.weights and not network.test_size:
            pretrained = ("a DINOv2 checkpoint (--backbone_weights=FOLDER" if network.weights == "folder"
                          else "an ImageNet-pretrained backbone (--backbone_weights=FILE")
            self.say(f"warning: --arch={arch} trains from random weights: its recipes start from "
                     f"{pretrained}, docs/methods.md 'Networks'); without one it needs far more "
                     "labels and steps")

    def _check_batch_divides(self):
        """Under multi_worker each replica reads its own slice of every batch, so the batches
        must split evenly."""
        replicas = self.strategy.num_replicas_in_sync
        if self.multi_worker and self.cfg.training.batch_size % replicas:
            raise config_lib.ConfigError(
                f"--batch_size={self.cfg.training.batch_size}: must be a multiple of the {replicas} "
                "replicas of --strategy=multi_worker (the global batch is split among them)")

    def say(self, text):
        if self.worker_name and not self.is_chief:
            text = "\n".join(f"[{self.worker_name}] {line}" for line in text.splitlines())
        print(text, file=self.out, flush=True)

    @property
    def step(self):
        return self.model.step

    def restore(self):
        """Restores the newest readable checkpoint, if there is one; the step to start from."""
        self.checkpoints.restore(self.workdir)
        return int(self.step.numpy())

    def training_batches(self, start):
        """The training batches from step `start` on, spread over the replicas. Several workers
        each read their own share of every step (`pipeline.WorkerShare`); one machine's replicas
        split its global batches."""
        if self.multi_worker:
            return self.strategy.distribute_datasets_from_function(
                lambda context: self.pipeline.train_dataset(start, pipeline.WorkerShare.of(context)))
        return self.strategy.experimental_distribute_dataset(self.pipeline.train_dataset(start))

    def run(self):
        """Trains to --train_steps (or --stop_at_step, or a stop signal); a RunResult. Releases the
        run folder at the end."""
        try:
            return self._run()
        finally:
            run_folder.release_workdir(self.workdir)
            if self._worker_checkpoints:
                shutil.rmtree(self._worker_checkpoints, ignore_errors=True)

    def _run(self):
        cfg = self.cfg
        steps = cfg.training.steps
        # --- where the run is: its newest readable checkpoint, or the start.
        start = self.restore()
        if start > steps:
            raise config_lib.ConfigError(f"--train_steps={steps}: the run in --workdir="
                                         f"{self.workdir} is already at step {start}")
        end = min(steps, cfg.training.stop_at_step or steps)
        if start == 0 and self.is_chief:
            self.reports.write_run_summary()
        history = run_folder.load_history(self.workdir, start)
        paused = functools.partial(RunResult, workdir=self.workdir, finished=False,
                                   eval_history=history, worker=self.worker_name)
        # --- training, to the end or a stop.
        if start < end:
            method = cfg.method.perturbation if self.model.uses_unlabelled else "no"
            self.say(f"training {cfg.network.arch} with {method} consistency (weight "
                     f"{cfg.method.cons_weight}), steps {start + 1}-{end} of {steps}, on "
                     f"{self.strategy.num_replicas_in_sync} replica(s); workdir {self.workdir}")
            stopped = self._train(start, end, history)
            if stopped:
                step, name = stopped
                self.say(f"stopped by {name} at step {step} of {steps}, with a checkpoint; run the "
                         "same command to continue")
                return paused(step=step, stopped_by=name)
        if end < steps:
            self.say(f"paused at step {end} of {steps}; run the same command without "
                     "--stop_at_step to continue")
            return paused(step=end)
        if not self.is_chief:
            # The chief evaluates and writes the scores.
            return RunResult(step=end, workdir=self.workdir, finished=True, eval_history=history,
                             worker=self.worker_name)
        # --- the final scores.
        if not history or history[-1]["step"] != steps:
            history.append({"step": steps, **self.reports.evaluate(steps)})
            run_folder.save_history(self.workdir, history)
        # The last evaluation's scores (older runs' entries hold fewer of them).
        scores = {**history[-1], "class_names": list(self.source.class_names),
                  "eval_history": history, "workdir": self.workdir}
        if self.test_evaluator is not None:
            # Once, at the end, as the authors do (CamVid's test set, or the official validation
            # set when --n_val holds out validation images).
            scores["test"] = self.test_evaluator(self.model.teacher)
            classes = "  ".join(f"{n} {100 * v:.1f}"
                                for n, v in scores["test"]["per_class_iou"].items())
            self.say(f"test @ step {steps}: mIoU {100 * scores['test']['miou']:.2f}%  ({classes})")
        atomic_write_bytes(os.path.join(self.workdir, run_folder.METRICS_FILE),
                           json.dumps(scores, indent=2).encode())
        return RunResult(step=steps, workdir=self.workdir, finished=True, eval_history=history,
                         scores=scores)

    def callbacks(self, end, history, stops):
        """The callbacks of steps start+1..end, in the order they act after each step."""
        cfg = self.cfg
        guard = callbacks.NonFiniteGuard(cfg.logs.log_every, self.say,
                                         lambda: self.checkpoints.latest)
        chosen = [guard,
                  callbacks.ProgressLog(cfg.training.steps, end, cfg.logs.log_every,
                                        self.reports.train_writer, guard, self.say),
                  callbacks.StopOnRequest(stops, shared=self.multi_worker)]
        if self.is_chief:
            chosen.append(callbacks.ConsistencyPanels(self.reports, cfg.logs.image_every))
            chosen.append(callbacks.PeriodicEvaluation(self.reports, cfg.evaluation.eval_every,
                                                       cfg.training.steps, history, self.workdir,
                                                       guard))
        chosen.append(callbacks.PeriodicCheckpoints(self.checkpoints, cfg.logs.checkpoint_every,
                                                    end, guard))
        return chosen

    def _train(self, start, end, history):
        """Steps start+1..end with `fit`; appends evaluations to `history`. Returns (step, signal
        name) when a signal stopped it early (see StopRequests), else None."""
        with StopRequests(self.out) as stops:
            chosen = self.callbacks(end, history, stops)
            try:
                self.model.fit(self.training_batches(start), steps_per_epoch=end - start,
                               epochs=1, verbose=0, shuffle=False, callbacks=chosen)
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
                    tf.errors.InternalError) as error:
                if not self.cfg.distribution.jit_compile or int(self.step.numpy()) != start:
                    raise self._lost_worker(error) or error
                raise config_lib.ConfigError(
                    f"--jit_compile: XLA cannot compile this training step on "
                    f"{self.strategy.num_replicas_in_sync} replica(s) "
                    f"({devices.error_reason(error)}); train without --jit_compile") from None
            except tf.errors.OpError as error:
                raise self._lost_worker(error) or error
            finally:
                self.reports.flush()
        progress, stop = chosen[1], chosen[2]
        if stop.stopped_at and stop.stopped_at[0] < end:
            return stop.stopped_at
        self.say(f"trained {end - start} steps in {callbacks.format_duration(progress.trained_for)}")
        return None

    def _lost_worker(self, error):
        """WorkerLost for a multi-worker collective that failed on another worker, else None."""
        lost = devices.lost_workers(error) if self.multi_worker else None
        if lost is None:
            return None
        latest = self.checkpoints.latest
        return WorkerLost(
            f"{', '.join(lost)} of the run stopped answering during step "
            f"{int(self.step.numpy()) + 1} (its process or machine ended), so this worker stops "
            "too; " + (f"the last checkpoint is {latest}; start the same command on every "
                       "worker to resume from it" if latest else
                       "no checkpoint was saved yet; start the same command on every worker to "
                       "train from the start"))
