"""The run folder: its files, the check that a resumed run keeps its flags, and the lock that
keeps one training in it at a time.

  flags.txt          the training flags, as a flagfile (`--flagfile=WORKDIR/flags.txt` reruns it)
  run.json           what evaluate, predict and export need: classes, palette, normalisation, network
  checkpoints/       tf.train.CheckpointManager: student, teacher, optimiser, step, dropout RNG
  tensorboard/       train/ and eval/ event files
  panels/            latest.png, the most recent consistency panel; validation.png, the latest
                     validation predictions; confusion.png, the latest confusion matrix
  eval_history.json  every evaluation so far (kept across resumes)
  metrics.json       final mIoU, per-class IoU and the evaluation history, written at the end
"""
import fcntl
import json
import os
import socket

from semiseg_tf import config as config_lib
from semiseg_tf.errors import RunFolderError  # noqa: F401 (raised by the checkpoint store)
from semiseg_tf.files import atomic_write_bytes, png_bytes
from semiseg_tf.run_files import (  # noqa: F401 (the run folder's names, used from here)
    CHECKPOINTS_DIR, FLAGS_FILE, HISTORY_FILE, LOCK_FILE, METRICS_FILE, PANELS_DIR, TENSORBOARD_DIR)


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


def _flag_lines(text):
    """{name: line} of a flagfile's text (the run folder itself excluded: it may move)."""
    lines = {}
    for line in text.splitlines():
        name = line.lstrip("-").split("=", 1)[0]
        if name.startswith("no"):
            name = name[2:] if name[2:] in config_lib.FLAG_NAMES else name
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
    schedule = cfg.optimiser.lr_sched
    if "train_steps" in changed and schedule in config_lib.LENGTH_DEPENDENT_SCHEDULES:
        raise config_lib.ConfigError(
            f"--train_steps: {saved.get('train_steps')} -> {current.get('train_steps')} for a run of "
            f"--workdir={workdir} with --lr_sched={schedule}, whose learning rate at every step "
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
               f"'{schedule}' does not depend on it)" if name == "train_steps"
               else f"{config_lib.RESUMABLE_CHANGES[name]}, not what is trained")
        notes.append(f"note: --{name} changed ({saved.get(name, 'unset')} -> "
                     f"{current.get(name, 'unset')}): {why}")
    return notes


# Run folders held by this process: {workdir: open lock file}. A second process asking for one of
# them is refused; this process may open it again (one Trainer after another, as the tests do).
_HELD_WORKDIRS = {}


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




def load_history(workdir, start):
    """Evaluations of the steps up to `start` (later ones belong to work the checkpoint lost)."""
    path = os.path.join(workdir, HISTORY_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [entry for entry in json.load(f) if entry["step"] <= start]


def save_history(workdir, history):
    atomic_write_bytes(os.path.join(workdir, HISTORY_FILE), json.dumps(history, indent=2).encode())


def save_panel(workdir, name, picture):
    os.makedirs(os.path.join(workdir, PANELS_DIR), exist_ok=True)
    atomic_write_bytes(os.path.join(workdir, PANELS_DIR, name), png_bytes(picture))
