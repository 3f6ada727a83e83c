"""Devices and strategies: one device, MirroredStrategy over GPUs or logical CPUs, several
machines (TF_CONFIG or SLURM), and what XLA can compile on them."""
import json
import os
import re
import shutil

import tensorflow as tf

from semiseg_tf import checkpoints
from semiseg_tf.errors import ConfigError, WorkerLost  # noqa: F401 (raised by the trainer)


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
            raise ConfigError(
                f"--cpu_devices={count}: TensorFlow is already running with {current} CPU device(s)")


def cluster_resolver(cfg, environ=os.environ):
    """The cluster of --strategy=multi_worker, from TF_CONFIG or SLURM's variables (--cluster);
    ConfigError, one line, when the variables are missing or malformed."""
    kind = cfg.distribution.cluster
    if kind == "auto":
        kind = "slurm" if "SLURM_PROCID" in environ and "TF_CONFIG" not in environ else "tf_config"
    if kind == "tf_config":
        text = environ.get("TF_CONFIG")
        if text is None:
            if cfg.distribution.cluster == "tf_config":
                raise ConfigError("--cluster=tf_config: the TF_CONFIG environment "
                                             "variable is not set")
            return tf.distribute.cluster_resolver.TFConfigClusterResolver()   # this machine alone
        try:
            spec = json.loads(text)
            task, workers = spec["task"], spec["cluster"]
            if not isinstance(workers, dict) or task["type"] not in workers:
                raise KeyError(task["type"])
            int(task["index"])
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(
                f"TF_CONFIG: expected JSON with 'cluster' (job name -> list of host:port) and "
                f"'task' (its 'type' one of those jobs, and 'index'); {type(error).__name__}: "
                f"{error}") from None
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if "SLURM_PROCID" not in environ:
        raise ConfigError("--cluster=slurm: SLURM's variables (SLURM_PROCID, "
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
        raise ConfigError(f"--cluster=slurm: {checkpoints.first_line(error)}") from None


def make_strategy(cfg):
    if cfg.distribution.strategy == "multi_worker":
        resolver = cluster_resolver(cfg)
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    if cfg.distribution.strategy == "mirrored":
        configure_cpu_devices(cfg.distribution.cpu_devices)
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def error_reason(error):
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
    if (cfg.distribution.jit_compile and strategy.num_replicas_in_sync > 1
            and not tf.config.list_logical_devices("GPU")):
        raise ConfigError(
            f"--jit_compile: XLA cannot compile a step spread over {strategy.num_replicas_in_sync} "
            f"CPU devices (--strategy={cfg.distribution.strategy}); on CPUs compile on one device "
            "(--strategy=default), or train without --jit_compile")
