"""The `deeplab_step` table: the paper's DeepLab v2 CutMix mean-teacher step, against PyTorch's.

  .venv/bin/python -m benchmarks.tables deeplab_step          # alone on the machine

Ours is the trainer's own step for flags/paper/pascal_deeplab2/cutmix_106.flags
(benchmarks/recipe_step.py) in float32, in bfloat16 and compiled by XLA; PyTorch's is the
authors' iteration written out in benchmarks/vs_pytorch.py (their repository needs its datasets to
run, so it is not what runs here). Random weights, the paper's 321x321 crop, one thread per core.
Each measurement is its own process, and the configurations take turns (A B C D, A B C D) because
a machine drifts over minutes; a row gives every round's figure, not only their median.
"""
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time

from benchmarks import harness

RECIPE = "flags/paper/pascal_deeplab2/cutmix_106.flags"
CONFIGS = ("pytorch", "float32", "bfloat16", "float32+xla", "bfloat16+xla")
BATCH, CROP, STEPS, ROUNDS = 2, 321, 3, 2


def child_command(config, batch, crop, steps, extra=()):
    """The command that measures one configuration and prints its JSON result last."""
    if config == "pytorch":
        return [sys.executable, "benchmarks/vs_pytorch.py", "--child=torch",
                f"--torch_python={sys.executable}", f"--batch_size={batch}", f"--crop={crop}",
                f"--steps={steps}", f"--threads={os.cpu_count()}"]
    return [sys.executable, "-m", "benchmarks.recipe_step", RECIPE, f"--child={config}",
            f"--batch_size={batch}", f"--steps={steps}", "--", f"--crop_size={crop},{crop}",
            *extra]


def measure_once(config, batch, crop, steps, extra=()):
    """{seconds, first, rss_gib} of one configuration in its own process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": str(os.cpu_count()),
           "PYTHONPATH": os.pathsep.join(filter(None, [harness.REPO, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(child_command(config, batch, crop, steps, extra), env=env,
                          cwd=harness.REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(command, batch=BATCH, crop=CROP, steps=STEPS, rounds=ROUNDS, configs=CONFIGS,
            extra=()):
    """Markdown: each configuration's seconds per step in every round, the median, the ratio to
    PyTorch's, the first step (tracing, compiling) and the process's peak memory."""
    results = {config: [] for config in configs}
    for round_ in range(rounds):
        for config in configs:
            result = measure_once(config, batch, crop, steps, extra)
            print(f"deeplab_step round {round_ + 1} {config}: {result['seconds']:.2f} s/step, "
                  f"first {result['first']:.0f} s, {result['rss_gib']:.2f} GiB", flush=True)
            results[config].append(result)
    median = {config: statistics.median(r["seconds"] for r in runs)
              for config, runs in results.items()}
    lines = [textwrap.fill(
        f"Code at commit {harness.code_commit()}; measured {time.strftime('%Y-%m-%d')} on "
        f"{harness.describe_machine(harness.machine())}, {os.cpu_count()} threads, alone on the "
        f"machine: batch {batch} labelled and {batch} unlabelled pairs, crop {crop}, the median "
        f"of {steps} steps after the first in each of {rounds} rounds taken in turn. Regenerate: "
        f"`{command}`.", 100), "",
        "| step | s/step, each round | median | speed-up over PyTorch | first step (s) | peak memory (GiB) |",
        "|---|---|---|---|---|---|"]
    names = {"pytorch": "PyTorch (the authors' iteration)"}
    for config, runs in results.items():
        versus = (f"{median['pytorch'] / median[config]:.2f}x"
                  if "pytorch" in median and config != "pytorch" else "")
        each = " / ".join(f"{r['seconds']:.2f}" for r in runs)
        lines.append(
            f"| {names.get(config, 'ours, ' + config.replace('+xla', ' + XLA'))} "
            f"| {each} | {median[config]:.2f} "
            f"| {versus} | {max(r['first'] for r in runs):.0f} "
            f"| {max(r['rss_gib'] for r in runs):.2f} |")
    return "\n".join(lines)
