"""Kill test: a training killed with SIGKILL at random moments, again and again, then resumed to the
end, must end with exactly the weights of the same run left alone.

  .venv/bin/python scripts/kill_test.py --kills 12 --workdir runs/kill_test

Runs `python -m semiseg_tf.train` on a tiny synthetic run that saves a checkpoint after every step
(so many kills land while one is being written), once uninterrupted, then in a second folder: start,
wait until it trains, sleep a random 0-`--max_delay` s, SIGKILL; repeat `--kills` times; then let it
finish. Compares every tensor of the two final checkpoints (student, teacher, optimiser slots, step,
dropout state) bit for bit, and prints what happened to each kill.
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A run of a few seconds on a CPU, with a checkpoint after every step and --keep_checkpoints=2, so
# kills hit steps, saves and the deletion of old checkpoints alike.
RUN_FLAGS = ["--dataset=synthetic", "--synthetic_num_train=24", "--synthetic_num_val=4",
             "--synthetic_image_size=16", "--crop_size=16,16", "--n_sup=4", "--arch=tiny_unet",
             "--batch_size=2", "--train_steps=100", "--eval_every=50", "--log_every=1",
             "--image_every=0", "--checkpoint_every=1", "--keep_checkpoints=2",
             "--aug_hflip", "--aug_scale_hung", "--conf_thresh=0.5"]


def train_command(workdir, extra=()):
    return [sys.executable, "-m", "semiseg_tf.train", *RUN_FLAGS, f"--workdir={workdir}", *extra]


# Set by --train_steps (and by the test suite, which runs a shorter version).
EXTRA_FLAGS = []


def environment():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}


def run_to_end(workdir):
    done = subprocess.run(train_command(workdir, EXTRA_FLAGS), cwd=REPO, env=environment(),
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the run in {workdir} failed:\n{done.stderr[-3000:]}")


def kill_once(workdir, rng, max_delay):
    """Starts the run and SIGKILLs it a random moment after its first training step. Returns (the
    step it resumed from, the last step it reported, whether it had finished before the kill)."""
    process = subprocess.Popen(train_command(workdir, EXTRA_FLAGS), cwd=REPO, env=environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    resumed, last = 0, None
    for line in process.stdout:
        if line.startswith("resuming from"):
            resumed = int(line.rsplit("(step ", 1)[1].rstrip(")\n"))
        if line.startswith("step ") or line.startswith("final mIoU"):
            break
    time.sleep(rng.uniform(0, max_delay))
    process.send_signal(signal.SIGKILL)
    rest = process.communicate()[0]
    for text in [line] + rest.splitlines():
        if text.startswith("step "):
            last = text.split()[1]
    return resumed, last, process.returncode == 0


def checkpoint_tensors(workdir):
    import tensorflow as tf
    path = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    return path, {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
                  if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


def compare(reference, killed):
    import numpy as np
    ref_path, ref = checkpoint_tensors(reference)
    kill_path, got = checkpoint_tensors(killed)
    if set(ref) != set(got):
        return False, f"different tensors: {sorted(set(ref) ^ set(got))[:5]}"
    different = [name for name in ref if not np.array_equal(ref[name], got[name])]
    return not different, (f"{len(ref)} tensors of {os.path.basename(ref_path)} and "
                           f"{os.path.basename(kill_path)}: "
                           + (f"{len(different)} differ ({different[:3]})" if different
                              else "all bit-identical"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=12, help="SIGKILLs before the last, whole start.")
    parser.add_argument("--max_delay", type=float, default=1.0,
                        help="Longest wait (s) between a start's first training step and its kill.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the kill moments.")
    parser.add_argument("--workdir", default="runs/kill_test",
                        help="Folder for the two runs (emptied first).")
    parser.add_argument("--train_steps", type=int, default=100, help="Length of the run.")
    args = parser.parse_args()
    EXTRA_FLAGS.append(f"--train_steps={args.train_steps}")
    shutil.rmtree(args.workdir, ignore_errors=True)
    reference, killed = os.path.join(args.workdir, "whole"), os.path.join(args.workdir, "killed")
    start = time.perf_counter()
    run_to_end(reference)
    rng = random.Random(args.seed)
    for k in range(args.kills):
        resumed, last, finished = kill_once(killed, rng, args.max_delay)
        print(f"kill {k + 1}: resumed from step {resumed}, "
              + ("the run finished before the kill" if finished
                 else f"killed after reporting step {last}"), flush=True)
    run_to_end(killed)
    same, detail = compare(reference, killed)
    print(f"{'PASS' if same else 'FAIL'}: {detail} ({time.perf_counter() - start:.0f}s)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
