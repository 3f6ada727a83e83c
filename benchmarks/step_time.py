"""Benchmark: the cost of one training step of each method, relative to the supervised baseline's.

  .venv/bin/python -m benchmarks.step_time --steps 300 \
      baseline=flags/demo/baseline.flags cutmix=flags/demo/cutmix.flags ...

Runs each flagfile alone (one training at a time, so they do not compete for the cores) for `--steps`
steps in a temporary workdir with no evaluation, reads the steps/s of the progress lines after the
first (which holds tracing and warm-up), and prints a markdown table: median steps/s, ms per step,
and the step time relative to the first method's. Extra flags after `--` go to every run.
"""
import argparse
import re
import statistics
import subprocess
import sys
import tempfile

_RATE = re.compile(r"^step \d+/\d+ .* ([0-9.]+) steps/s")


def steps_per_second(flagfile, steps, extra):
    with tempfile.TemporaryDirectory() as workdir:
        result = subprocess.run(
            [sys.executable, "-m", "semiseg_tf.train", f"--flagfile={flagfile}", f"--workdir={workdir}",
             f"--train_steps={steps}", f"--eval_every={steps}", "--log_every=25", "--image_every=0",
             f"--checkpoint_every={steps}", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        sys.exit(f"{flagfile}: training failed:\n{result.stdout[-2000:]}")
    rates = [float(m.group(1)) for m in map(_RATE.match, result.stdout.splitlines()) if m]
    if len(rates) < 3:
        sys.exit(f"{flagfile}: too few progress lines; use more --steps")
    return statistics.median(rates[1:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("methods", nargs="+", help="NAME=FLAGFILE pairs; the first is the reference")
    parser.add_argument("--steps", type=int, default=300, help="steps per method")
    # Flags after `--` are the runs'; argparse would take them for more NAME=FLAGFILE pairs.
    argv, extra = sys.argv[1:], []
    if "--" in argv:
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    args = parser.parse_args(argv)
    rows = []
    for method in args.methods:
        name, flagfile = method.split("=", 1)
        rate = steps_per_second(flagfile, args.steps, extra)
        rows.append((name, rate))
        print(f"{name}: {rate:.2f} steps/s", file=sys.stderr, flush=True)
    reference = rows[0][1]
    print("| method | steps/s | ms per step | step time vs " + rows[0][0] + " |")
    print("|---|---|---|---|")
    for name, rate in rows:
        print(f"| {name} | {rate:.2f} | {1000 / rate:.0f} | {reference / rate:.2f}x |")


if __name__ == "__main__":
    main()
