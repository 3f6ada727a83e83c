"""Benchmark: several methods x several seeds on the embedded dataset, as a markdown table.

  .venv/bin/python scripts/bench_seeds.py --runs runs/bench --seeds 0 1 2 --jobs 2 \
      baseline=flags/demo/baseline.flags cutmix=flags/demo/cutmix.flags

Each run is `python -m semiseg_tf.train --flagfile=F --seed=S --workdir=RUNS/NAME/seed_S`; finished
runs are reused, so the script can be stopped and started again. `--jobs 2` runs two trainings at a
time (on 2 cores each then gets about one). Extra flags after `--` go to every run.
"""
import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import time


def train(name, flagfile, seed, runs, extra):
    workdir = os.path.join(runs, name, f"seed_{seed}")
    metrics = os.path.join(workdir, "metrics.json")
    if not os.path.exists(metrics):
        os.makedirs(workdir, exist_ok=True)
        start = time.time()
        with open(os.path.join(workdir, "train.log"), "a") as log:
            subprocess.run([sys.executable, "-m", "semiseg_tf.train", f"--flagfile={flagfile}",
                            f"--seed={seed}", f"--workdir={workdir}", *extra],
                           stdout=log, stderr=subprocess.STDOUT, check=True)
        print(f"{name} seed {seed}: done in {time.time() - start:.0f} s", flush=True)
    with open(metrics) as f:
        return json.load(f)["miou"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("methods", nargs="+", help="NAME=FLAGFILE pairs")
    parser.add_argument("--runs", default="runs/bench", help="folder of the run folders")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="the training's --seed values, one run each per method")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at a time")
    # Flags after `--` are the runs'; argparse would take them for more NAME=FLAGFILE pairs.
    argv, extra = sys.argv[1:], []
    if "--" in argv:
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    args = parser.parse_args(argv)
    methods = [m.split("=", 1) for m in args.methods]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        # Seed-major, so that each seed's comparison is complete as early as possible.
        futures = {(name, seed): pool.submit(train, name, flagfile, seed, args.runs, extra)
                   for seed in args.seeds for name, flagfile in methods}
        results = {key: 100 * future.result() for key, future in futures.items()}
    print("\n| method | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean | std |")
    print("|---|" + "---|" * (len(args.seeds) + 2))
    for name, _ in methods:
        values = [results[name, s] for s in args.seeds]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values)
              + f" | {statistics.mean(values):.2f} | {spread:.2f} |")


if __name__ == "__main__":
    main()
