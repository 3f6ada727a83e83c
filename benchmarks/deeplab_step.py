"""The `deeplab_step` table: the paper's DeepLab v2 CutMix mean-teacher step, against PyTorch's.

  .venv/bin/python -m benchmarks.tables deeplab_step          # alone on the machine

Ours is the trainer's own step for flags/paper/pascal_deeplab2/cutmix_106.flags
(benchmarks/recipe_step.py) in float32, in bfloat16 and compiled by XLA; PyTorch's is the
authors' iteration written out in benchmarks/vs_pytorch.py (their repository needs its datasets to
run, so it is not what runs here). Random weights, the paper's 321x321 crop, one thread per core.
Each measurement is its own process, and the configurations take turns (A B C D, A B C D) because
a machine drifts over minutes; a row gives every round's figure, not only their median.

On a processor with AVX-512, both float32 steps run again limited to AVX2's instructions, as on
the AVX2-only processors some users have: oneDNN's kernels by ONEDNN_MAX_CPU_ISA=AVX2, PyTorch's
own by ATEN_CPU_CAPABILITY=avx2 (TensorFlow's other kernels are built for AVX and use no AVX-512
anyway). It emulates the instructions, not the other processor's caches and clock.
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
AVX2_CONFIGS = ("pytorch/avx2", "float32/avx2")
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
BATCH, CROP, STEPS, ROUNDS = 2, 321, 3, 2


def child_command(config, batch, crop, steps, extra=()):
    """The command that measures `config` (without its /avx2) and prints its JSON result last."""
    if config == "pytorch":
        return [sys.executable, "benchmarks/vs_pytorch.py", "--child=torch",
                f"--torch_python={sys.executable}", f"--batch_size={batch}", f"--crop={crop}",
                f"--steps={steps}", f"--threads={os.cpu_count()}"]
    return [sys.executable, "-m", "benchmarks.recipe_step", RECIPE, f"--child={config}",
            f"--batch_size={batch}", f"--steps={steps}", "--", f"--crop_size={crop},{crop}",
            *extra]


def measure_once(config, batch, crop, steps, extra=()):
    """{seconds, first, rss_gib} of one configuration in its own process."""
    name, _, isa = config.partition("/")
    env = harness.child_env(OMP_NUM_THREADS=str(os.cpu_count()),
                            **(AVX2_ONLY if isa == "avx2" else {}))
    done = subprocess.run(child_command(name, batch, crop, steps, extra), env=env,
                          cwd=harness.REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def label(config):
    name, _, isa = config.partition("/")
    text = ("PyTorch (the authors' iteration)" if name == "pytorch"
            else "ours, " + name.replace("+xla", " + XLA"))
    return text + (", AVX2 instructions only" if isa else "")


def measure(command, batch=BATCH, crop=CROP, steps=STEPS, rounds=ROUNDS, configs=None,
            extra=()):
    """Markdown: each configuration's seconds per step in every round, the median, the ratio to
    PyTorch's on the same instructions, the first step (tracing, compiling) and the process's
    peak memory."""
    if configs is None:
        configs = CONFIGS + (AVX2_CONFIGS if "AVX-512" in harness.machine()["vector"] else ())
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
        "| step | s/step, each round | median | speed-up over PyTorch | first step (s) "
        "| peak memory (GiB) |",
        "|---|---|---|---|---|---|"]
    for config, runs in results.items():
        isa = config.partition("/")[2]
        reference = "pytorch" + (f"/{isa}" if isa else "")
        versus = (f"{median[reference] / median[config]:.2f}x"
                  if reference in median and config != reference else "")
        each = " / ".join(f"{r['seconds']:.2f}" for r in runs)
        lines.append(f"| {label(config)} | {each} | {median[config]:.2f} | {versus} "
                     f"| {max(r['first'] for r in runs):.0f} "
                     f"| {max(r['rss_gib'] for r in runs):.2f} |")
    return "\n".join(lines)
