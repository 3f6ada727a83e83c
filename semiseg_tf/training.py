"""The training run: builds everything from a `Config`, trains, evaluates, checkpoints, resumes.

A run lives in its workdir:
  flags.txt          the training flags, as a flagfile (`--flagfile=WORKDIR/flags.txt` reruns it)
  run.json           what evaluate, predict and export need: classes, palette, normalisation, network
  checkpoints/       tf.train.CheckpointManager: student, teacher, optimiser, step, dropout RNG
  tensorboard/       train/ and eval/ event files
  panels/            latest.png, the most recent consistency panel; validation.png, the latest
                     validation predictions; confusion.png, the latest confusion matrix
  eval_history.json  every evaluation so far (kept across resumes)
  metrics.json       final mIoU, per-class IoU and the evaluation history, written at the end
The input pipeline is a pure function of the step (see data/pipeline.py), so the checkpointed step is
the whole input state: running the same command again continues exactly where the run stopped.
"""
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from semiseg_tf import checkpoints
from semiseg_tf import config as config_lib
from semiseg_tf import models, run_info, visualise
from semiseg_tf.evaluation import Evaluator
from semiseg_tf.files import atomic_write_bytes, png_bytes
from semiseg_tf.augment import boxmask, colour, geometric
from semiseg_tf.data import base, native, pipeline, prepared, synthetic
from semiseg_tf.models import precision, weights
from semiseg_tf.semisup import mean_teacher, optim, perturbations

FLAGS_FILE = "flags.txt"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "eval_history.json"
CHECKPOINTS_DIR = checkpoints.CHECKPOINTS_DIR
# The longest a training goes without a progress line (besides --log_every's).
LOG_SECONDS = 60


class StopRequests:
    """SIGTERM (what job schedulers and spot machines send) and Ctrl-C (SIGINT) ask the training
    loop to stop at the end of the current step, with a checkpoint, instead of killing it mid-step;
    a second Ctrl-C ends the process at once (exit status 130). `signal_name` is the request, or None.

    Python runs a signal's handler in the main thread only, and only once that thread is back in
    the interpreter: during a step of minutes the main thread is inside one TensorFlow call, so a
    handler there would be late by that step (and a second Ctrl-C could not stop anything). The C
    part of Python's handler does run at once, in whichever thread the signal reaches, and writes
    the signal's number to the wakeup file descriptor; a watcher thread waits on it and answers.
    TensorFlow releases the interpreter lock while it computes, so the watcher runs within
    moments. Installed only from the main thread (the only one that may set handlers)."""

    def __init__(self, out):
        self.out = out
        self.signal_name = None
        self._previous = {}
        self._previous_wakeup = None
        self._pipe = None
        self._watcher = None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)    # set_wakeup_fd wants it so: a handler never blocks
        self._pipe = (read_end, write_end)
        self._previous_wakeup = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT):
            # The Python-level handler has nothing left to do: the watcher answered already.
            self._previous[signum] = signal.signal(signum, lambda *_: None)
        self._watcher = threading.Thread(target=self._watch, name="stop-requests", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if self._pipe:
            signal.set_wakeup_fd(self._previous_wakeup)
            os.write(self._pipe[1], b"\0")       # no signal has number 0: the watcher's end
            self._watcher.join()
            for fd in self._pipe:
                os.close(fd)
        return False

    def _watch(self):
        while True:
            for signum in os.read(self._pipe[0], 64):
                if signum == 0:
                    return
                if signum in (signal.SIGTERM, signal.SIGINT):
                    self.request(signum)

    def request(self, signum):
        """Answers one signal: the first is noted and acknowledged in one flushed line; a second
        Ctrl-C ends the process now (the kernel releases the run folder's lock)."""
        name = signal.Signals(signum).name
        if self.signal_name is not None and signum == signal.SIGINT:
            print(f"\n{name} again: stopping now, without a checkpoint; the same command resumes "
                  "from the last one", file=self.out, flush=True)
            sys.stderr.flush()
            os._exit(128 + signal.SIGINT)
        if self.signal_name is not None:
            return
        self.signal_name = name
        print(f"\n{name}: stopping at the end of this step, with a checkpoint"
              + (" (Ctrl-C again stops at once)" if signum == signal.SIGINT else ""),
              file=self.out, flush=True)


class RunFolderError(RuntimeError):
    """The run folder cannot be written (disk full, read-only); the message names the path."""


class WorkerLost(RuntimeError):
    """Another worker of a multi-worker run stopped answering; the message names it, the last
    checkpoint and how to resume."""


def lost_workers(error):
    """The workers a multi-worker collective failed on ('worker 1', ...), from TensorFlow's error;
    None when the error is not about a lost worker."""
    text = str(getattr(error, "message", error))
    if not isinstance(error, (tf.errors.UnavailableError, tf.errors.InternalError,
                              tf.errors.AbortedError, tf.errors.CancelledError,
                              tf.errors.UnknownError)) or not re.search(
            r"unhealthy|heartbeat|[Ss]ocket closed|Connection reset|failed to connect|"
            r"coordination service", text):
        return None
    tasks = sorted({f"{job} {task}" for job, task in re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)",
                                                                text)})
    return tasks or ["another worker"]


class TrainingDiverged(RuntimeError):
    """A loss, gradient or weight became non-finite; the message names the step and what."""


def make_workdir(workdir):
    """Creates the run folder (and its parents) and checks it can be written; ConfigError names it."""
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as error:
        raise config_lib.ConfigError(f"--workdir={workdir}: cannot be written "
                                     f"({error.strerror or error})") from None


def configure_cpu_devices(count):
    """Splits the CPU into `count` logical devices (must run before TF touches any device)."""
    if count <= 1 or tf.config.list_physical_devices("GPU"):
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        current = len(tf.config.list_logical_devices("CPU"))
        if current != count:
            raise config_lib.ConfigError(
                f"--cpu_devices={count}: TensorFlow is already running with {current} CPU device(s)")


def cluster_resolver(cfg, environ=os.environ):
    """The cluster of --strategy=multi_worker, from TF_CONFIG or SLURM's variables (--cluster);
    ConfigError, one line, when the variables are missing or malformed."""
    kind = cfg.cluster
    if kind == "auto":
        kind = "slurm" if "SLURM_PROCID" in environ and "TF_CONFIG" not in environ else "tf_config"
    if kind == "tf_config":
        text = environ.get("TF_CONFIG")
        if text is None:
            if cfg.cluster == "tf_config":
                raise config_lib.ConfigError("--cluster=tf_config: the TF_CONFIG environment "
                                             "variable is not set")
            return tf.distribute.cluster_resolver.TFConfigClusterResolver()   # this machine alone
        try:
            spec = json.loads(text)
            task, workers = spec["task"], spec["cluster"]
            if not isinstance(workers, dict) or task["type"] not in workers:
                raise KeyError(task["type"])
            int(task["index"])
        except (ValueError, KeyError, TypeError) as error:
            raise config_lib.ConfigError(
                f"TF_CONFIG: expected JSON with 'cluster' (job name -> list of host:port) and "
                f"'task' (its 'type' one of those jobs, and 'index'); {type(error).__name__}: "
                f"{error}") from None
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if "SLURM_PROCID" not in environ:
        raise config_lib.ConfigError("--cluster=slurm: SLURM's variables (SLURM_PROCID, "
                                     "SLURM_STEP_NODELIST, ...) are not set; start it with srun")
    gpu_options = {}
    if not ("CUDA_VISIBLE_DEVICES" in environ or shutil.which("nvidia-smi")):
        # CPU nodes: the resolver hands every task of a node its own GPUs and fails without any,
        # so it is told of one per task, and not to hide any device.
        from tensorflow.python.distribute.cluster_resolver import slurm_cluster_resolver
        tasks = max(slurm_cluster_resolver.expand_tasks_per_node(
            environ.get("SLURM_STEP_TASKS_PER_NODE", "1")))
        gpu_options = dict(gpus_per_node=tasks, gpus_per_task=1, auto_set_gpu=False)
    try:
        return tf.distribute.cluster_resolver.SlurmClusterResolver(**gpu_options)
    except (RuntimeError, ValueError, KeyError) as error:
        raise config_lib.ConfigError(f"--cluster=slurm: {checkpoints.first_line(error)}") from None


def make_strategy(cfg):
    if cfg.strategy == "multi_worker":
        resolver = cluster_resolver(cfg)
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    if cfg.strategy == "mirrored":
        configure_cpu_devices(cfg.cpu_devices)
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def build_source(cfg, out=sys.stderr):
    """The data source of `cfg.dataset`; file-based ones are listed, checked and prepared (once)."""
    native.set_max_image_pixels(cfg.max_image_pixels)
    if cfg.dataset == "synthetic":
        return synthetic.SyntheticSource(cfg.synthetic_num_train, cfg.synthetic_num_val,
                                         cfg.synthetic_image_size, cfg.synthetic_seed,
                                         cfg.synthetic_representative_split)
    return prepared.build_prepared_source(
        cfg.dataset, cfg.data_dir, cfg.prepared_dir, n_sup=cfg.n_sup, n_val=cfg.n_val,
        val_seed=cfg.val_seed, split_file=cfg.split_file, num_classes=cfg.num_classes,
        mask_values=cfg.mask_values,
        workers=cfg.prepare_workers or None, out=out)


def build_perturbation(cfg):
    mask_params = boxmask.BoxMaskParams(
        prop_range=cfg.mask_prop_range, n_boxes=cfg.boxmask_n_boxes,
        random_aspect_ratio=not cfg.boxmask_fixed_aspect_ratio, by_size=cfg.boxmask_by_size,
        within_bounds=not cfg.boxmask_outside_bounds, invert=not cfg.boxmask_no_invert,
        authors_outside_bounds=cfg.boxmask_authors_outside_bounds)
    options = {
        "cutmix": dict(mask_params=mask_params),
        "cutout": dict(mask_params=mask_params),
        "ict": dict(alpha=cfg.ict_alpha),
        "vat": dict(radius=cfg.vat_radius, adaptive_radius=cfg.adaptive_vat_radius,
                    dir_from_student=cfg.vat_dir_from_student, loss_fn=cfg.cons_loss_fn,
                    authors_eval_mode=cfg.vat_authors_eval_mode, probe_scale=cfg.vat_probe_scale,
                    authors_probe=cfg.vat_authors_probe),
    }
    return perturbations.build(cfg.perturbation, **options.get(cfg.perturbation, {}))


def geometric_params(cfg):
    return geometric.GeometricParams(
        crop_size=cfg.crop_size, scale_hung=cfg.aug_scale_hung, max_scale=cfg.aug_max_scale,
        scale_non_uniform=cfg.aug_scale_non_uniform, rot_mag=cfg.aug_rot_mag, hflip=cfg.aug_hflip,
        vflip=cfg.aug_vflip, hvflip=cfg.aug_hvflip, crop_offset=cfg.aug_offset_range,
        free_scale_rot=cfg.aug_free_scale_rot)


def student_colour_params(cfg):
    if not cfg.aug_strong_colour:
        return None
    return colour.ColourParams(
        brightness=cfg.aug_colour_brightness, contrast=cfg.aug_colour_contrast,
        saturation=cfg.aug_colour_saturation, hue=cfg.aug_colour_hue, prob=cfg.aug_colour_prob,
        greyscale_prob=cfg.aug_colour_greyscale_prob)


def pipeline_params(cfg):
    """The input pipeline's settings of a run: batch, seed, augmentation."""
    return pipeline.PipelineParams(
        batch_size=cfg.batch_size, seed=cfg.seed, geometric=geometric_params(cfg),
        student_colour=student_colour_params(cfg), unlabelled_batch_ratio=cfg.unsup_batch_ratio,
        student_blur_prob=cfg.aug_strong_blur)


def build_model(cfg, num_classes, rgb_mean=base.IMAGENET_MEAN, rgb_std=base.IMAGENET_STD):
    """The MeanTeacher model, compiled and initialised. Call inside the strategy's scope.

    `rgb_mean`, `rgb_std`: the input normalisation, which pretrained weights are adapted to.
    """
    schedule = optim.AuthorsSchedule(cfg.lr_sched, cfg.learning_rate, cfg.train_steps,
                                     cfg.lr_poly_power, cfg.lr_step_boundaries, cfg.lr_step_gamma)
    optimizer = optim.build_optimizer(cfg.opt_type, schedule, cfg.sgd_momentum, cfg.sgd_nesterov)
    grouped_optimizer = optimizer
    if cfg.mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    options = dict(freeze_bn=cfg.freeze_bn, deeplab2_aspp_two_branches=cfg.deeplab2_aspp_two_branches)
    with precision.building_in(cfg.mixed_precision):
        student = models.build(cfg.arch, num_classes, **options)
        teacher = student if cfg.model == "pi" else models.build(cfg.arch, num_classes, **options)
    if cfg.backbone_weights:
        # Into the student only: `initialise` makes the teacher its copy.
        weights.load_backbone_weights(student, cfg.backbone_weights, rgb_mean, rgb_std)
    model = mean_teacher.MeanTeacher(
        student=student,
        teacher=teacher,
        perturbation=build_perturbation(cfg) if cfg.cons_weight > 0 else None,
        cons_weight=cfg.cons_weight, conf_thresh=cfg.conf_thresh, teacher_alpha=cfg.teacher_alpha,
        cons_loss_fn=cfg.cons_loss_fn,
        weight_decay=cfg.sgd_weight_decay if cfg.opt_type == "sgd" else 0.0,
        conf_per_pixel=cfg.conf_per_pixel, rampup_steps=cfg.rampup,
        unsup_batch_ratio=cfg.unsup_batch_ratio,
        bn_stats_from_unlabelled=cfg.bn_stats_from_unlabelled,
        skip_nonfinite=cfg.on_nonfinite == "skip", sup_weight=cfg.sup_weight,
        cons_average=cfg.cons_average)
    model.compile(optimizer=optimizer)
    model.initialise(tuple(cfg.crop_size) + (3,))
    backbone = models.backbone_of(student)
    if backbone is not None:
        grouped_optimizer.scale_learning_rate(backbone.trainable_variables, cfg.backbone_lr_scale)
    if cfg.deeplab2_authors_repeated_updates:
        grouped_optimizer.repeat_updates(models.deeplab_v2.authors_update_multiplicities(student),
                                         coupled_weight_decay=model.weight_decay)
    return model


def _flag_lines(text):
    """{name: line} of a flagfile's text (the run folder itself excluded: it may move)."""
    lines = {}
    for line in text.splitlines():
        name = line.lstrip("-").split("=", 1)[0]
        if name.startswith("no"):
            name = name[2:] if name[2:] in config_lib.Config.__dataclass_fields__ else name
        if name and name != "workdir":
            lines[name] = line
    return lines


def _has_checkpoints(workdir):
    """Whether the run folder holds a checkpoint (listed, or only on disk: a damaged list)."""
    folder = os.path.join(workdir, CHECKPOINTS_DIR)
    return os.path.isdir(folder) and any(
        name.startswith("ckpt-") and name.endswith(".index") for name in os.listdir(folder))


def check_workdir_flags(workdir, flagfile_text, cfg):
    """Whether a run folder may continue with these flags. A folder that holds no checkpoint has
    trained nothing, so any flags may start it afresh. Otherwise flags that change what is trained
    are refused (one line); what may change (config.RESUMABLE_CHANGES, a longer --train_steps with
    a schedule that does not depend on it) is returned as notes to print."""
    path = os.path.join(workdir, FLAGS_FILE)
    if not os.path.exists(path) or not _has_checkpoints(workdir):
        return []
    with open(path) as f:
        saved = _flag_lines(f.read())
    current = _flag_lines(flagfile_text)
    # A flag added to the project after the run started is unchanged if it is at its default.
    for name in set(current) - set(saved):
        saved[name] = config_lib.default_flag_line(name)
    changed = sorted(name for name in set(saved) | set(current) if saved.get(name) != current.get(name))
    refused = [n for n in changed if n not in config_lib.RESUMABLE_CHANGES and n != "train_steps"]
    if "train_steps" in changed and cfg.lr_sched in config_lib.LENGTH_DEPENDENT_SCHEDULES:
        raise config_lib.ConfigError(
            f"--train_steps: {saved.get('train_steps')} -> {current.get('train_steps')} for a run of "
            f"--workdir={workdir} with --lr_sched={cfg.lr_sched}, whose learning rate at every step "
            "depends on the run's length: the steps already trained would have had other rates. "
            "Start a new --workdir (or train with --lr_sched=none or stepped, which extend)")
    if refused:
        detail = "; ".join(f"{saved.get(n, 'unset')} -> {current.get(n, 'unset')}" for n in refused[:3])
        raise config_lib.ConfigError(
            f"--workdir={workdir} holds a run with other flags ({detail}); resume it with "
            f"--flagfile={path} or choose a new --workdir")
    notes = []
    for name in changed:
        if name == "stop_at_step":
            continue      # set anew on every call of a paused run
        why = ("the run continues to the new length (the learning-rate schedule "
               f"'{cfg.lr_sched}' does not depend on it)" if name == "train_steps"
               else f"{config_lib.RESUMABLE_CHANGES[name]}, not what is trained")
        notes.append(f"note: --{name} changed ({saved.get(name, 'unset')} -> "
                     f"{current.get(name, 'unset')}): {why}")
    return notes


# Run folders held by this process: {workdir: open lock file}. A second process asking for one of
# them is refused; this process may open it again (one Trainer after another, as the tests do).
_HELD_WORKDIRS = {}
LOCK_FILE = ".lock"


def lock_workdir(workdir):
    """Makes this process the only one training in `workdir` (an flock on WORKDIR/.lock, which the
    kernel releases when the process ends, however it ends). ConfigError names the holder."""
    if workdir in _HELD_WORKDIRS:
        return
    lock = open(os.path.join(workdir, LOCK_FILE), "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise config_lib.ConfigError(
            f"--workdir={workdir}: another training is running in it ({holder}); wait for it to "
            "end, or choose another --workdir") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"process {os.getpid()} on {socket.gethostname()}\n")
    lock.flush()
    _HELD_WORKDIRS[workdir] = lock


def release_workdir(workdir):
    lock = _HELD_WORKDIRS.pop(workdir, None)
    if lock is not None:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def _enlargement(height):
    """How much to enlarge pictures of `height`-pixel crops so they are readable (the demo's are 64
    px), in whole steps so label pixels stay sharp."""
    return max(1, min(4, 200 // max(height, 1)))


def _error_reason(error):
    """The line of a TensorFlow error that says what went wrong (a 'Graph execution error' puts it
    after the stack of the node it was detected at)."""
    lines = [line.strip() for line in (getattr(error, "message", None) or str(error)).splitlines()]
    reasons = [line for line in lines if line and not line.startswith(
        ("Graph execution error", "Detected at node", "[[", "Cf.", "File ", "(defined"))]
    return (reasons[0] if reasons else checkpoints.first_line(error))[:300]


def check_jit_compile(cfg, strategy):
    """ConfigError when --jit_compile cannot work with this device layout: XLA compiles the
    replicas' steps of a strategy only on GPUs (over logical CPU devices TensorFlow's cross-device
    merge_call and placement cannot be compiled)."""
    if (cfg.jit_compile and strategy.num_replicas_in_sync > 1
            and not tf.config.list_logical_devices("GPU")):
        raise config_lib.ConfigError(
            f"--jit_compile: XLA cannot compile a step spread over {strategy.num_replicas_in_sync} "
            f"CPU devices (--strategy={cfg.strategy}); on CPUs compile on one device "
            "(--strategy=default), or train without --jit_compile")


def _format_duration(seconds):
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


class Trainer:
    """One run. `Trainer(cfg, flagfile_text).run()` trains to `cfg.train_steps` and returns metrics.

    Under --strategy=multi_worker every worker runs one; the chief (`is_chief`) alone writes the
    run folder (flags, run.json, TensorBoard, evaluations, checkpoints, metrics) and evaluates; the
    others train in step with it and save their checkpoints to a temporary folder of their own,
    as TensorFlow's multi-worker guide requires (saving is collective), deleted at the end.
    """

    def __init__(self, cfg, flagfile_text, out=sys.stdout):
        self.cfg = cfg
        self.out = out
        # First: MultiWorkerMirroredStrategy must be made before TensorFlow runs anything.
        self.strategy = make_strategy(cfg)
        self.is_chief = self.strategy.extended.should_checkpoint
        self.worker_name = None
        if is_multi_worker(self.strategy):
            resolver = self.strategy.cluster_resolver
            self.worker_name = f"{resolver.task_type} {resolver.task_id}"
        if self.is_chief:
            make_workdir(cfg.workdir)
        resume_notes = check_workdir_flags(cfg.workdir, flagfile_text, cfg)
        if self.is_chief:
            lock_workdir(cfg.workdir)
        try:
            self._build(flagfile_text)
        except BaseException:
            release_workdir(cfg.workdir)
            raise
        for note in resume_notes:
            self._print(note)

    def _build(self, flagfile_text):
        cfg = self.cfg
        check_jit_compile(cfg, self.strategy)
        self._check_batch_divides()
        keras.utils.set_random_seed(cfg.seed)
        self.source = build_source(cfg, out=self.out)
        if cfg.bin_fill_holes and self.source.num_classes != 2:
            raise config_lib.ConfigError(
                f"--bin_fill_holes: needs a two-class dataset; {cfg.dataset} has "
                f"{self.source.num_classes} classes")
        labelled, unlabelled = self.source.labelled_split(cfg.n_sup, cfg.split_seed)
        self._warn_small_images()
        with self.strategy.scope():
            self.model = build_model(cfg, self.source.num_classes, self.source.rgb_mean,
                                     self.source.rgb_std)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self._warn_untrained_backbone()
        # Written once the flags, the data and the weights have been checked: a command that
        # failed on them leaves the folder as it was.
        self.info = run_info.from_run(cfg, self.source)
        if self.is_chief:
            atomic_write_bytes(os.path.join(cfg.workdir, FLAGS_FILE), flagfile_text.encode())
            run_info.write(cfg.workdir, self.info)
        self.pipeline = pipeline.InputPipeline(
            self.source, labelled, unlabelled, pipeline_params(cfg),
            perturbation=self.model.perturbation if self.model.uses_unlabelled else None)
        self.run_checkpoint = checkpoints.RunCheckpoint(
            student=self.model.student, teacher=self.model.teacher, optimizer=self.model.optimizer,
            step=self.step)
        # A worker's own folder for the checkpoints it must write but nobody reads.
        self._worker_checkpoints = None if self.is_chief else tempfile.mkdtemp(
            prefix=f"semiseg_tf-{self.worker_name.replace(' ', '-')}-")
        self.manager = self._make_manager()
        multiple = models.input_multiple(cfg.arch)
        options = config_lib.inference_options(cfg)
        self.evaluator = Evaluator(self.source, cfg.eval_batch_size, multiple, cfg.bin_fill_holes,
                                   options=options, jit_compile=cfg.jit_compile)
        test_set = self.source.test()
        self.test_evaluator = None if test_set is None else Evaluator(
            self.source, cfg.eval_batch_size, multiple, cfg.bin_fill_holes, dataset=test_set,
            options=options, jit_compile=cfg.jit_compile)
        self.tb_dir = os.path.join(cfg.workdir, "tensorboard")
        if self.is_chief:
            self.train_writer = tf.summary.create_file_writer(os.path.join(self.tb_dir, "train"))
            self.eval_writer = tf.summary.create_file_writer(os.path.join(self.tb_dir, "eval"))
        else:
            self.train_writer = self.eval_writer = tf.summary.create_noop_writer()
        self.flagfile_text = flagfile_text
        self._nonfinite_reported = 0
        self._weights_finite = None

    def _warn_small_images(self):
        """A warning when training images are smaller than the crop (they are padded, which is
        legitimate, but often a mistake: a crop meant for other data)."""
        sizes = self.source.train_image_sizes()
        if sizes is None or not len(sizes):
            return
        crop_h, crop_w = self.cfg.crop_size
        small = (sizes[:, 0] < crop_h) | (sizes[:, 1] < crop_w)
        if small.any():
            smallest = sizes[np.argmin(sizes[:, 0] * sizes[:, 1])]
            self._print(f"warning: --crop_size={crop_h},{crop_w} is larger than {int(small.sum())} "
                        f"of the {len(sizes)} training images (the smallest is "
                        f"{smallest[0]}x{smallest[1]}, height x width): their crops are padded with "
                        "the mean colour and ignored labels")

    def _warn_untrained_backbone(self):
        """A warning when a network whose recipes start from ImageNet weights trains without them:
        from random weights it needs far more labels and steps (the small variants never have
        pretrained weights, and are meant to train without)."""
        cfg = self.cfg
        if (not cfg.backbone_weights and not cfg.arch.endswith("_small")
                and models.backbone_of(self.model.student) is not None):
            self._print(f"warning: --arch={cfg.arch} trains from random weights: its recipes start "
                        "from an ImageNet-pretrained backbone (--backbone_weights=FILE, "
                        "docs/methods.md 'Networks'); without one it needs far more labels and "
                        "steps")

    def _check_batch_divides(self):
        """Under multi_worker each replica reads its own slice of every batch, so the batches
        must split evenly."""
        replicas = self.strategy.num_replicas_in_sync
        if is_multi_worker(self.strategy) and self.cfg.batch_size % replicas:
            raise config_lib.ConfigError(
                f"--batch_size={self.cfg.batch_size}: must be a multiple of the {replicas} "
                "replicas of --strategy=multi_worker (the global batch is split among them)")

    def _print(self, text):
        if self.worker_name and not self.is_chief:
            text = "\n".join(f"[{self.worker_name}] {line}" for line in text.splitlines())
        print(text, file=self.out, flush=True)

    def restore(self):
        """Restores the newest checkpoint that can be read, if there is one; returns the step to
        start from. Unreadable ones (truncated, corrupted, an empty index) are named in a line each,
        set aside (renamed *.unreadable) and the folder's checkpoint list rewritten without them."""
        unreadable = []
        for path in self._checkpoints_newest_first():
            try:
                exact = self.run_checkpoint.restore(path)
            except checkpoints.CheckpointUnreadable as error:
                self._print(f"warning: {path} cannot be read ({error}); trying the one before it")
                unreadable.append(path)
                continue
            except checkpoints.CheckpointMismatch as error:
                raise config_lib.ConfigError(f"--workdir={self.cfg.workdir}: {error}; resume it "
                                             "with the code that wrote it or use a new --workdir")
            if unreadable and self.is_chief:
                self._set_aside(unreadable)
            self._print(f"resuming from {path} (step {int(self.step.numpy())})")
            if not exact:
                self._print("  " + checkpoints.FRESH_DROPOUT_NOTE)
            return int(self.step.numpy())
        if unreadable:
            raise config_lib.ConfigError(
                f"--workdir={self.cfg.workdir}: none of its {len(unreadable)} checkpoint(s) can be "
                f"read (the newest, {unreadable[0]}, as said above); start a new --workdir")
        return 0

    def _checkpoints_newest_first(self):
        """The checkpoints the manager lists and any other ckpt-N on disk, those whose files are
        there, newest first."""
        folder = os.path.join(self.cfg.workdir, CHECKPOINTS_DIR)
        paths = set(self.manager.checkpoints) if self.is_chief else set()
        for name in (os.listdir(folder) if os.path.isdir(folder) else []):
            if name.startswith("ckpt-") and name.endswith(".index"):
                paths.add(os.path.join(folder, name[:-len(".index")]))

        def number(path):
            tail = os.path.basename(path)[len("ckpt-"):]
            return int(tail) if tail.isdigit() else -1
        return sorted((p for p in paths if number(p) >= 0 and os.path.exists(p + ".index")),
                      key=number, reverse=True)

    def _set_aside(self, unreadable):
        """Renames unreadable checkpoints' files to *.unreadable (for inspection; never read
        again) and makes the manager list only the others."""
        for prefix in unreadable:
            folder, base = os.path.split(prefix)
            for name in os.listdir(folder):
                if name.startswith(base + ".") and not name.endswith(".unreadable"):
                    os.replace(os.path.join(folder, name), os.path.join(folder, name + ".unreadable"))
        kept = list(reversed(self._checkpoints_newest_first()))
        # The manager's state file (a CheckpointState text proto) naming the newest kept one; the
        # save times let the manager go on deleting the oldest beyond --keep_checkpoints.
        state = "".join(
            [f'model_checkpoint_path: "{os.path.basename(kept[-1])}"\n']
            + [f'all_model_checkpoint_paths: "{os.path.basename(p)}"\n' for p in kept]
            + [f"all_model_checkpoint_timestamps: {os.path.getmtime(p + '.index')}\n" for p in kept])
        atomic_write_bytes(os.path.join(self.manager.directory, "checkpoint"), state.encode())
        self.manager = self._make_manager()

    def _make_manager(self):
        """The run's CheckpointManager. It writes each checkpoint completely, then names it in its
        state file by an atomic rename: a crash mid-save leaves the previous one as the latest. A
        state file that cannot be parsed is set aside (the checkpoints are found on disk)."""
        folder = self._worker_checkpoints or os.path.join(self.cfg.workdir, CHECKPOINTS_DIR)
        try:
            return tf.train.CheckpointManager(self.run_checkpoint.checkpoint, folder,
                                              max_to_keep=self.cfg.keep_checkpoints)
        except Exception as error:  # a damaged state file; what TF raises varies with the damage
            state = os.path.join(folder, "checkpoint")
            self._print(f"warning: {state} cannot be read ({checkpoints.first_line(error)}); "
                        "looking for the checkpoints themselves")
            os.replace(state, state + ".unreadable")
            return tf.train.CheckpointManager(self.run_checkpoint.checkpoint, folder,
                                              max_to_keep=self.cfg.keep_checkpoints)

    def _check_nonfinite_steps(self):
        """Stops the run (TrainingDiverged) at a step whose loss or gradient was not finite, or with
        --on_nonfinite=skip reports the steps skipped since the last report."""
        count = int(self.model.nonfinite_steps.numpy())
        if count == self._nonfinite_reported:
            return
        first = int(self.model.first_nonfinite_step.numpy())
        what = mean_teacher.describe_nonfinite(self.model.first_nonfinite_what.numpy())
        if not self.model.skip_nonfinite:
            raise TrainingDiverged(
                f"step {first}: {what} became non-finite (nan or inf); the run stops without "
                f"saving, so its latest checkpoint ({self.manager.latest_checkpoint or 'none yet'}) "
                "is its last good state. Lower --learning_rate, or let it skip such steps with "
                "--on_nonfinite=skip")
        self._print(f"warning: {count - self._nonfinite_reported} step(s) skipped, whose loss or "
                    f"gradient was not finite ({count} in this session; the first, step {first}: "
                    f"{what})")
        self._nonfinite_reported = count

    def _check_weights_finite(self, step):
        """TrainingDiverged when a weight, a batch-norm statistic or an optimiser slot is not
        finite (an update can overflow with a finite loss and gradient)."""
        if self._weights_finite is None:
            variables = [v for v in (self.model.student.weights + self.model.teacher.weights
                                     + self.model.optimizer.variables)
                         if keras.backend.is_float_dtype(v.dtype)]
            self._weights_finite = tf.function(lambda: tf.reduce_all(tf.stack(
                [tf.reduce_all(tf.math.is_finite(v)) for v in variables])))
        if not bool(self._weights_finite()):
            raise TrainingDiverged(
                f"step {step}: the weights are not finite (nan or inf), from an update that "
                "overflowed; the run stops without saving, so its latest "
                f"checkpoint ({self.manager.latest_checkpoint or 'none yet'}) is its last good "
                "state. Lower --learning_rate")

    def _flush_summaries(self):
        self.train_writer.flush()
        self.eval_writer.flush()

    def save_checkpoint(self, step):
        """Saves ckpt-`step`. A write that fails (disk full, read-only) leaves no part of it and the
        previous checkpoint as the latest, and stops the run with RunFolderError."""
        try:
            self.manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as error:
            folder = self.manager.directory
            for name in os.listdir(folder):
                if name.startswith(f"ckpt-{step}.") or name.startswith(f"ckpt-{step}_temp"):
                    path = os.path.join(folder, name)
                    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
            raise RunFolderError(
                f"{folder}: cannot write checkpoint ckpt-{step} ({checkpoints.first_line(error)}); "
                f"the latest checkpoint is still {self.manager.latest_checkpoint or 'none'}") from None

    def _make_step_fn(self):
        model, strategy = self.model, self.strategy
        # XLA compiles each replica's step (as Keras's own trainer does); reading the next batch
        # and combining the replicas' logs stay outside it.
        train_step = (tf.function(model.train_step, jit_compile=True) if self.cfg.jit_compile
                      else model.train_step)

        multi_worker = is_multi_worker(strategy)

        @tf.function
        def step_fn(iterator, step, stop=0.0):
            per_replica = strategy.run(train_step, args=(next(iterator), step))
            # Every replica returns the global values, so the mean is that value.
            logs = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                    for k, v in per_replica.items()}
            if multi_worker:
                # Whether any worker was asked to stop (SIGTERM reaches the workers one by one):
                # all must stop after the same step, or the others would wait for it forever.
                requests = strategy.run(lambda request: tf.distribute.get_replica_context()
                                        .all_reduce(tf.distribute.ReduceOp.SUM,
                                                    tf.identity(request)),
                                        args=(tf.convert_to_tensor(stop, tf.float32),))
                logs["stop"] = strategy.experimental_local_results(requests)[0]
            return logs
        return step_fn

    def distributed_batches(self, start):
        """The training batches from step `start` on, spread over the replicas. Several workers
        each read their own share of every step (`pipeline.WorkerShare`); one machine's replicas
        split its global batches."""
        if is_multi_worker(self.strategy):
            return iter(self.strategy.distribute_datasets_from_function(
                lambda context: self.pipeline.train_dataset(start, pipeline.WorkerShare.of(context))))
        return iter(self.strategy.experimental_distribute_dataset(
            self.pipeline.train_dataset(start)))

    def _first_step(self, step_fn, iterator, step, stop):
        """The first step of this process (it also traces and, with --jit_compile, compiles the
        step); its logs as floats. What XLA cannot compile is said in one line."""
        try:
            logs = step_fn(iterator, tf.constant(step, tf.int64), stop)
            return {k: float(v) for k, v in logs.items()}
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
                tf.errors.InternalError) as error:
            if not self.cfg.jit_compile:
                raise
            raise config_lib.ConfigError(
                f"--jit_compile: XLA cannot compile this training step on "
                f"{self.strategy.num_replicas_in_sync} replica(s) ({_error_reason(error)}); "
                "train without --jit_compile") from None

    def evaluate(self, step):
        result = self.evaluator(self.model.teacher)
        confusion_png, _ = visualise.confusion_picture(result["confusion"], self.source.class_names)
        examples = self.validation_panel()
        with self.eval_writer.as_default(step=step):
            tf.summary.scalar("miou", result["miou"])
            tf.summary.scalar("pixel_accuracy", result["pixel_accuracy"])
            for name, iou in result["per_class_iou"].items():
                tf.summary.scalar(f"iou/{name}", iou)
            tf.summary.image("confusion_matrix", confusion_png[None])
            tf.summary.image("validation/image_truth_prediction", examples[None])
        self._save_panel("confusion.png", confusion_png)
        self._save_panel("validation.png", examples)
        classes = "  ".join(f"{n} {100 * v:.1f}" for n, v in result["per_class_iou"].items())
        self._print(f"eval @ step {step}: mIoU {100 * result['miou']:.2f}%, pixel accuracy "
                    f"{100 * result['pixel_accuracy']:.2f}%  ({classes})")
        return result

    def validation_panel(self, count=4):
        """A titled picture of the first `count` validation images: image, truth, prediction."""
        images, labels, predictions = self.evaluator.examples(self.model.teacher, count)
        palette = self.source.palette
        rows = [[image, visualise.colourise(label, palette), visualise.colourise(prediction, palette)]
                for image, label, prediction in zip(images, labels, predictions)]
        return visualise.panel(rows, titles=["image", "truth", "prediction"],
                               scale=_enlargement(images[0].shape[0]))

    def _save_panel(self, name, picture):
        os.makedirs(os.path.join(self.cfg.workdir, "panels"), exist_ok=True)
        atomic_write_bytes(os.path.join(self.cfg.workdir, "panels", name), png_bytes(picture))

    def write_run_summary(self):
        """The run's flags into TensorBoard, as text and as hparams (so runs compare side by side)."""
        lines = "\n".join(f"    {line}" for line in self.flagfile_text.splitlines())
        with self.train_writer.as_default(step=0):
            tf.summary.text("flags", f"Training flags of `{self.cfg.workdir}`:\n\n{lines}")
        hparams = {}
        for name, value in vars(self.cfg).items():
            if name == "workdir" or value is None:
                continue
            hparams[name] = value if isinstance(value, (bool, int, float, str)) else str(value)
        # The hparams plugin takes the run folder's own events as the trial, and the scalars of
        # its sub-folders (eval/miou, ...) as the trial's metrics.
        writer = tf.summary.create_file_writer(self.tb_dir)
        with writer.as_default():
            hparams_api.hparams(hparams, trial_id=os.path.basename(self.cfg.workdir))
        writer.close()

    def write_panels(self, step, count=4):
        """TensorBoard images (and panels/latest.png) of the consistency inputs and outputs."""
        if not self.model.uses_unlabelled:
            return
        batch = next(iter(self.pipeline.train_dataset(step).take(1)))
        result = self.model.perturbation.consistency(self.model.student, self.model.teacher,
                                                     batch["unlabelled"], training=False)
        # One loss, or several (UniMatch's strong views and feature stream), each with a prediction.
        streams = ([(None, result)] if isinstance(result, perturbations.ConsistencyTerms)
                   else [(stream.name, stream.terms) for stream in result])
        terms = streams[0][1]
        mean, std = self.source.rgb_mean, self.source.rgb_std
        palette = self.source.palette
        columns = {}
        for name, images in [item for _, t in streams for item in t.panels.items()]:
            images = images[:count].numpy()
            columns[name] = (visualise.to_uint8_rgb(images, mean, std) if images.shape[-1] == 3
                             else visualise.grey_to_rgb(images))
        columns["teacher_target"] = visualise.colourise(
            np.argmax(terms.teacher_probs[:count].numpy(), axis=-1), palette)
        if self.model.conf_per_pixel and self.model.conf_thresh > 0:
            # The target where it counts (FixMatch's pseudo-label): unconfident pixels grey.
            confident = columns["teacher_target"].copy()
            unconfident = terms.teacher_confidence[:count].numpy()[..., 0] < self.model.conf_thresh
            confident[unconfident] = 128
            columns["confident_target"] = confident
        for name, stream_terms in streams:
            columns[f"{name}_prediction" if name else "student_prediction"] = visualise.colourise(
                np.argmax(stream_terms.student_logits[:count].numpy(), axis=-1), palette)
        with self.train_writer.as_default(step=step):
            for name, images in columns.items():
                tf.summary.image(f"consistency/{name}", images, max_outputs=count)
        rows = [[columns[name][i] for name in columns] for i in range(len(columns["teacher_target"]))]
        picture = visualise.panel(rows, titles=[name.replace("_", " ") for name in columns],
                                  scale=_enlargement(rows[0][0].shape[0]))
        self._save_panel("latest.png", picture)

    def _load_history(self, start):
        """Evaluations of the steps up to `start` (later ones belong to work the checkpoint lost)."""
        path = os.path.join(self.cfg.workdir, HISTORY_FILE)
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [entry for entry in json.load(f) if entry["step"] <= start]

    def _save_history(self, history):
        atomic_write_bytes(os.path.join(self.cfg.workdir, HISTORY_FILE),
                           json.dumps(history, indent=2).encode())

    def run(self):
        """Trains to --train_steps (or --stop_at_step); returns the metrics dict (with 'paused':
        True and no scores when it stopped at --stop_at_step). Releases the run folder at the end."""
        try:
            return self._run()
        finally:
            release_workdir(self.cfg.workdir)
            if self._worker_checkpoints:
                shutil.rmtree(self._worker_checkpoints, ignore_errors=True)

    def _run(self):
        cfg = self.cfg
        start = self.restore()
        if start > cfg.train_steps:
            raise config_lib.ConfigError(
                f"--train_steps={cfg.train_steps}: the run in --workdir={cfg.workdir} is already at "
                f"step {start}")
        end = min(cfg.train_steps, cfg.stop_at_step or cfg.train_steps)
        if start == 0 and self.is_chief:
            self.write_run_summary()
        history = self._load_history(start)
        if start < end:
            self._print(f"training {cfg.arch} with "
                        f"{cfg.perturbation if self.model.uses_unlabelled else 'no'} consistency "
                        f"(weight {cfg.cons_weight}), steps {start + 1}-{end} of {cfg.train_steps}, on "
                        f"{self.strategy.num_replicas_in_sync} replica(s); workdir {cfg.workdir}")
            stopped = self._train(start, end, history)
            if stopped:
                step, name = stopped
                self._print(f"stopped by {name} at step {step} of {cfg.train_steps}, with a "
                            "checkpoint; run the same command to continue")
                return {"step": step, "paused": True, "signal": name, "eval_history": history,
                        "workdir": cfg.workdir}
        if end < cfg.train_steps:
            self._print(f"paused at step {end} of {cfg.train_steps}; run the same command without "
                        "--stop_at_step to continue")
            return {"step": end, "paused": True, "eval_history": history, "workdir": cfg.workdir}
        if not self.is_chief:
            # The chief evaluates and writes the scores.
            return {"step": end, "worker": self.worker_name, "workdir": cfg.workdir}
        if not history or history[-1]["step"] != cfg.train_steps:
            history.append({"step": cfg.train_steps, **self.evaluate(cfg.train_steps)})
            self._save_history(history)
        # The last evaluation's scores (older runs' entries hold fewer of them).
        result = {**history[-1], "class_names": list(self.source.class_names),
                  "eval_history": history, "workdir": cfg.workdir}
        if self.test_evaluator is not None:
            # Once, at the end, as the authors do (CamVid's test set, or the official validation
            # set when --n_val holds out validation images).
            result["test"] = self.test_evaluator(self.model.teacher)
            classes = "  ".join(f"{n} {100 * v:.1f}" for n, v in result["test"]["per_class_iou"].items())
            self._print(f"test @ step {cfg.train_steps}: mIoU {100 * result['test']['miou']:.2f}%  "
                        f"({classes})")
        atomic_write_bytes(os.path.join(cfg.workdir, METRICS_FILE),
                           json.dumps(result, indent=2).encode())
        return result

    def _train(self, start, end, history):
        """Steps start+1..end; appends evaluations to `history`. Returns (step, signal name) when a
        signal stopped it early (see StopRequests), else None."""
        with StopRequests(self.out) as stops:
            try:
                return self._train_steps(start, end, history, stops)
            except tf.errors.OpError as error:
                lost = lost_workers(error) if is_multi_worker(self.strategy) else None
                if lost is None:
                    raise
                latest = self.manager.latest_checkpoint
                raise WorkerLost(
                    f"{', '.join(lost)} of the run stopped answering during step "
                    f"{int(self.step.numpy()) + 1} (its process or machine ended), so this worker "
                    "stops too; " + (f"the last checkpoint is {latest}; start the same command on "
                                     "every worker to resume from it" if latest else
                                     "no checkpoint was saved yet; start the same command on every "
                                     "worker to train from the start")) from None

    def _train_steps(self, start, end, history, stops):
        cfg = self.cfg
        step_fn = self._make_step_fn()
        iterator = self.distributed_batches(start)
        multi_worker = is_multi_worker(self.strategy)
        run_start = time.perf_counter()
        # The speed is timed from the end of the first step, which also traces the step function:
        # counted in, it would make the first ETA far too long.
        window_start, window_steps = None, 0
        # Besides every --log_every steps, a line after the first step and whenever LOG_SECONDS
        # passed without one, so that slow steps (a big network on a CPU) still show progress.
        last_line = time.perf_counter()
        for step in range(start + 1, end + 1):
            stop = tf.constant(float(stops.signal_name is not None), tf.float32)
            if window_start is None:
                logs = self._first_step(step_fn, iterator, step, stop)
                # Its outputs were read, so it has finished: the clock starts now.
                window_start = time.perf_counter()
            else:
                logs = step_fn(iterator, tf.constant(step, tf.int64), stop)
            self.step.assign(step)
            if step > start + 1:
                window_steps += 1
            if (step % cfg.log_every == 0 or step == end or step == start + 1
                    or time.perf_counter() - last_line >= LOG_SECONDS):
                last_line = time.perf_counter()
                self._check_nonfinite_steps()
                logs = {k: float(v) for k, v in logs.items()}
                now = time.perf_counter()
                rate = window_steps / (now - window_start) if window_steps else None
                if window_steps:
                    window_start, window_steps = now, 0
                speed = (f"{rate:.1f} steps/s  ETA {_format_duration((end - step) / rate)}"
                         if rate else "(timing from the next step)")
                scaling = ""
                if "loss_scale" in logs:
                    overflows = int(self.model.overflow_steps.numpy())
                    scaling = f"loss scale {logs['loss_scale']:.0f} ({overflows} overflow skips)  "
                self._print(f"step {step}/{cfg.train_steps}  sup {logs['sup_loss']:.4f}  "
                            f"cons {logs['cons_loss']:.5f}  conf {logs['conf_share']:.3f}  "
                            f"lr {logs['learning_rate']:.2e}  {scaling}{speed}")
                with self.train_writer.as_default(step=step):
                    for name, value in logs.items():
                        tf.summary.scalar(name, value)
                    if rate:
                        tf.summary.scalar("steps_per_second", rate)
                    tf.summary.scalar("skipped_steps", self._nonfinite_reported)
            evaluating = self.is_chief and (step % cfg.eval_every == 0 or step == cfg.train_steps)
            saving = step % cfg.checkpoint_every == 0 or step == end
            # One process stops after the step in which it was asked to. Workers stop after the
            # step whose combined request (taken at its start) says one of them was, all alike.
            stopping = stops.signal_name is not None
            if multi_worker:
                stopping = float(logs["stop"]) > 0
                if stopping and not stops.signal_name:
                    stops.signal_name = "SIGTERM"      # another worker's
            if evaluating or saving:
                # Nothing non-finite is ever scored or saved.
                self._check_nonfinite_steps()
                self._check_weights_finite(step)
            if self.is_chief and cfg.image_every and step % cfg.image_every == 0:
                self.write_panels(step)
            if evaluating:
                history.append({"step": step, **self.evaluate(step)})
                self._save_history(history)
            if saving:
                self.save_checkpoint(step)
            elif stopping:
                self._check_nonfinite_steps()
                self._check_weights_finite(step)
                self.save_checkpoint(step)
            if stopping and step < end:
                self._flush_summaries()
                return step, stops.signal_name
        self._flush_summaries()
        self._print(f"trained {end - start} steps in "
                    f"{_format_duration(time.perf_counter() - run_start)}")
