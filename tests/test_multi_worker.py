"""--strategy=multi_worker with two worker processes on 127.0.0.1 (TF_CONFIG each, one CPU device
each): a SIGTERM to one worker stops both after the same step with a checkpoint, the restart
ends with the weights of an uninterrupted one-device run on the same global batch, and only the
chief writes the run folder."""
import json
import os
import signal
import socket
import stat
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import parse_flags
from semiseg_tf import config, training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = {"dataset": "synthetic", "synthetic_num_train": 16, "synthetic_num_val": 4,
       "synthetic_image_size": 16, "crop_size": "16,16", "n_sup": 4, "arch": "tiny_unet",
       "batch_size": 4, "eval_every": 1000, "log_every": 1, "image_every": 0, "conf_thresh": 0.3,
       "aug_hflip": "true", "checkpoint_every": 1000}
STEPS = 30
# The chief writes with the usual umask, the other worker with one that makes its files private:
# a file of the other worker in the run folder would show by its mode.
CHIEF_UMASK, WORKER_UMASK = 0o022, 0o077


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(workdir, steps=STEPS):
    """Two `python -m semiseg_tf.train --strategy=multi_worker` processes, worker 0 the chief."""
    hosts = [f"127.0.0.1:{port}" for port in free_ports(2)]
    args = [f"--{k}={v}" for k, v in {**RUN, "train_steps": steps, "workdir": workdir}.items()]
    workers = []
    for index, umask in enumerate((CHIEF_UMASK, WORKER_UMASK)):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": json.dumps(
            {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "semiseg_tf.train", "--strategy=multi_worker", *args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=lambda umask=umask: os.umask(umask)))
    return workers


def finish(workers, timeout=300):
    """Waits for the workers: (exit codes, outputs). A hung worker (one waiting for a collective
    the other never joins) is killed, and the test fails on its exit code."""
    outputs = []
    for worker in workers:
        try:
            outputs.append(worker.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for w in workers:
                w.kill()
            outputs.append(worker.communicate()[0] + "\n(killed: it did not finish in time)")
    return [w.returncode for w in workers], outputs


def networks(checkpoint):
    """{name: value} of the student's and teacher's variables in a checkpoint."""
    reader = tf.train.load_checkpoint(checkpoint)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(("student/", "teacher/")) and "OPTIMIZER_SLOT" not in name}


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
    """The same run on one device, in this process: (its final checkpoint, how far its student
    moved from its initial weights)."""
    workdir = tmp_path_factory.mktemp("single_device") / "run"
    cfg, text = parse_flags(**{**RUN, "train_steps": STEPS, "workdir": str(workdir)})
    trainer = training.Trainer(cfg, text, out=open(os.devnull, "w"))
    initial = [w.numpy() for w in trainer.model.student.weights]
    trainer.run()
    moved = max(float(np.abs(w.numpy() - w0).max())
                for w, w0 in zip(trainer.model.student.weights, initial))
    return os.path.join(workdir, "checkpoints", f"ckpt-{STEPS}"), moved


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A two-worker run that SIGTERM stops mid-run, started again to the end: (run folder, the
    step it stopped at, each launch's exit codes and outputs)."""
    workdir = str(tmp_path_factory.mktemp("multi_worker") / "run")
    workers = start_workers(workdir)
    chief_lines = []
    for line in workers[0].stdout:
        chief_lines.append(line)
        if line.startswith("step 3/"):
            # To the other worker only: the chief must learn of it through the step's all-reduce.
            workers[1].send_signal(signal.SIGTERM)
            break
    stopped_codes, stopped_outputs = finish(workers)
    stopped_outputs[0] = "".join(chief_lines) + stopped_outputs[0]
    lines = [line for line in stopped_outputs[0].splitlines() if line.startswith("stopped by")]
    step = int(lines[0].split("at step ")[1].split()[0]) if lines else None
    codes, outputs = finish(start_workers(workdir))
    return workdir, step, (stopped_codes, stopped_outputs), (codes, outputs)


def test_sigterm_to_one_worker_stops_both_after_the_same_step_with_a_checkpoint(interrupted):
    workdir, step, (codes, outputs), _ = interrupted
    assert codes == [143, 143], outputs
    assert step is not None and 3 <= step < STEPS, outputs[0][-2000:]
    assert f"stopped by SIGTERM at step {step}" in outputs[1]
    assert os.path.exists(os.path.join(workdir, "checkpoints", f"ckpt-{step}.index"))


def test_two_workers_resumed_end_like_one_device_on_the_same_global_batch(interrupted,
                                                                          single_device):
    """The restart resumes from the SIGTERM checkpoint and finishes with the student and teacher
    of an uninterrupted one-device run on the same global batch (the tolerance of the
    MirroredStrategy test): the update is the same, and resuming changes nothing."""
    workdir, step, _, (codes, outputs) = interrupted
    assert codes == [0, 0], outputs
    assert "on 2 replica(s)" in outputs[0]
    assert "resuming from" in outputs[0] and f"(step {step})" in outputs[0]
    reference, moved = single_device
    assert moved > 1e-3                      # the run really trained: equality is not trivial
    chief = networks(os.path.join(workdir, "checkpoints", f"ckpt-{STEPS}"))
    alone = networks(reference)
    assert set(chief) == set(alone) and any(k.startswith("teacher/") for k in chief)
    for name, value in alone.items():
        np.testing.assert_allclose(chief[name], value, rtol=0, atol=1e-5, err_msg=name)


def test_only_the_chief_writes_the_run_folder(interrupted):
    workdir, _, _, (codes, outputs) = interrupted
    assert codes == [0, 0]
    files = [os.path.join(folder, name) for folder, _, names in os.walk(workdir) for name in names]
    names = set(map(os.path.basename, files))
    assert {"flags.txt", "run.json", "metrics.json", "eval_history.json"} <= names
    private = [p for p in files if stat.S_IMODE(os.stat(p).st_mode) & 0o044 == 0]
    assert not private, private                        # no file of the other worker
    assert "the chief evaluated and wrote" in outputs[1]
    assert "eval @ step" not in outputs[1]             # only the chief evaluates


# --- the cluster, from the environment (no processes started) ------------------------------------

def cluster_of(environ, cluster="auto"):
    cfg, _ = parse_flags(**{**RUN, "workdir": "/nonexistent", "strategy": "multi_worker",
                            "cluster": cluster})
    return training.cluster_resolver(cfg, environ)


def test_the_cluster_comes_from_slurm_variables():
    """Two CPU nodes of two tasks each (TensorFlow's resolver needs GPUs; see cluster_resolver)."""
    environ = {"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4",
               "SLURM_STEP_NODELIST": "node[07-08]", "SLURM_STEP_TASKS_PER_NODE": "2(x2)"}
    previous = dict(os.environ)
    os.environ.update(environ)          # TensorFlow's resolver reads os.environ itself
    try:
        resolver = cluster_of(environ)
        assert resolver.cluster_spec().as_dict() == {
            "worker": ["node07:8888", "node07:8889", "node08:8888", "node08:8889"]}
        assert (resolver.task_type, resolver.task_id) == ("worker", 3)
    finally:
        os.environ.clear()
        os.environ.update(previous)


@pytest.mark.parametrize("environ, cluster, message", [
    ({}, "tf_config", "--cluster=tf_config: the TF_CONFIG environment variable is not set"),
    ({"TF_CONFIG": "{cluster"}, "auto", "TF_CONFIG: expected JSON"),
    ({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}'},
     "auto", "TF_CONFIG: expected JSON"),
    ({}, "slurm", "--cluster=slurm: SLURM's variables"),
])
def test_a_missing_or_malformed_cluster_is_one_line(environ, cluster, message):
    with pytest.raises(config.ConfigError) as error:
        cluster_of(environ, cluster)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_lost_worker_stops_the_chief_with_one_line_naming_it_and_how_to_resume(tmp_path):
    workdir = str(tmp_path / "run")
    workers = start_workers(workdir, steps=100000)
    chief_lines = []
    for line in workers[0].stdout:
        chief_lines.append(line)
        if line.startswith("step 5/"):
            workers[1].kill()                       # SIGKILL: no goodbye to the chief
            break
    codes, outputs = finish(workers, timeout=180)
    output = "".join(chief_lines) + outputs[0]
    assert codes[0] == 4, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in output, output[-3000:]
    assert "worker 1 of the run stopped answering during step" in errors[0], errors[0]
    assert "start the same command on every worker" in errors[0], errors[0]
