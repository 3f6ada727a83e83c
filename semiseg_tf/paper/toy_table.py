"""Runs the paper's four 2-D toy settings over seeds and writes their boundary scores as one table.

  .venv/bin/python -m semiseg_tf.paper.toy_table [--seeds 1 2 3] [--settings sup_gap ...] [--runs DIR]
      [--jobs N] [--dry_run] [--collect_only]

Each setting (flags/toy2d/SETTING.flags) runs once per seed into RUNS/SETTING_SEED (default RUNS =
runs/toy2d). Runs resume: run the same command again after an interruption; finished runs are kept.
--jobs N runs N at a time, each pinned to its own share of the CPU cores (on a 2-core machine two
one-core runs finish about 20% sooner in all than one two-core run after another). Then
RUNS/results.md holds, per setting, the mean and standard deviation of each score over the finished
runs (see semiseg_tf/paper/toy2d/evaluate.py for what the scores mean).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from semiseg_tf.files import atomic_write_bytes

# The checkout this tool works in (it runs flags/toy2d/ into its runs/).
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SETTINGS = ("sup_gap", "semisup_gap", "semisup_nogap_isotropic", "semisup_nogap_contours")

# (column title, how to read it from metrics.json, scale, decimals)
COLUMNS = (
    ("pixel accuracy (%)", lambda m: m["pixel_accuracy"], 100, 2),
    ("within 35 px of the boundary (%)", lambda m: m["accuracy_within_35px"], 100, 2),
    ("learned -> true boundary, mean (px)", lambda m: m["predicted_to_true_boundary_px"]["mean"], 1, 1),
    ("learned -> true boundary, p95 (px)", lambda m: m["predicted_to_true_boundary_px"]["p95"], 1, 1),
    ("true -> learned boundary, mean (px)", lambda m: m["true_to_predicted_boundary_px"]["mean"], 1, 1),
    ("learned boundary's level, mean (px)", lambda m: m["predicted_boundary_level_px"]["mean"], 1, 1),
    ("learned boundary's level, std (px)", lambda m: m["predicted_boundary_level_px"]["std"], 1, 1),
    ("authors' error rate (%)", lambda m: m["authors_error_rate"], 100, 2),
    ("s/epoch", lambda m: m["seconds_per_epoch"], 1, 1),
)


def run_dir(runs, setting, seed):
    return os.path.join(runs, f"{setting}_{seed}")


def command(setting, seed, runs):
    return [sys.executable, "-m", "semiseg_tf.paper.toy2d",
            f"--flagfile={os.path.join(REPO, 'flags', 'toy2d', setting + '.flags')}",
            f"--seed={seed}", f"--workdir={run_dir(runs, setting, seed)}"]


def run_all(jobs_to_run, runs, parallel):
    """Runs the commands, `parallel` at a time, each pinned to its own cores; returns the failures."""
    cores = sorted(os.sched_getaffinity(0))
    share = max(1, len(cores) // parallel)
    slots = [cores[i * share:(i + 1) * share] for i in range(parallel)]
    pending, running, failed = list(jobs_to_run), {}, []
    while pending or running:
        for slot, cpus in enumerate(slots):
            if slot in running or not pending:
                continue
            setting, seed = pending.pop(0)
            os.makedirs(run_dir(runs, setting, seed), exist_ok=True)
            log = open(os.path.join(run_dir(runs, setting, seed), "log.txt"), "a")
            print(f"start {setting} seed {seed} on cores {cpus} (log: {log.name})", flush=True)
            process = subprocess.Popen(command(setting, seed, runs), cwd=REPO, stdout=log,
                                       stderr=subprocess.STDOUT,
                                       preexec_fn=lambda cpus=cpus: os.sched_setaffinity(0, cpus))
            running[slot] = (process, setting, seed, log)
        for slot, (process, setting, seed, log) in list(running.items()):
            if process.poll() is not None:
                log.close()
                del running[slot]
                print(f"done {setting} seed {seed} (exit {process.returncode})", flush=True)
                if process.returncode:
                    failed.append((setting, seed))
        time.sleep(1)
    return failed


def _read(read, metrics):
    """A score, or None where the run has none (no boundary, or a metrics.json from before that
    score existed)."""
    try:
        return read(metrics)
    except KeyError:
        return None


def _mean_std(values, scale, decimals):
    values = [scale * v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{decimals}f}"
    return f"{statistics.mean(values):.{decimals}f} ± {statistics.stdev(values):.{decimals}f}"


def results_table(settings, seeds, runs):
    lines = ["| setting | runs | " + " | ".join(title for title, *_ in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for setting in settings:
        metrics = []
        for seed in seeds:
            path = os.path.join(run_dir(runs, setting, seed), "metrics.json")
            if os.path.exists(path):
                with open(path) as f:
                    metrics.append(json.load(f))
        cells = []
        for _, read, scale, decimals in COLUMNS:
            values = [_read(read, m) for m in metrics]
            cell = _mean_std(values, scale, decimals)
            present = sum(v is not None for v in values)
            if 0 < present < len(values):    # say when a mean leaves runs out
                cell += f" ({present} of {len(values)} runs)"
            cells.append(cell)
        lines.append(f"| `{setting}` | {len(metrics)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3],
                        help="the toy's --seed values to run each setting with (default: 1 2 3)")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS),
                        help="which flags/toy2d/ settings to run (default: all four)")
    parser.add_argument("--runs", default=os.path.join("runs", "toy2d"),
                        help="runs folder: one SETTING_SEED workdir per run, and results.md; "
                             "finished runs (with a metrics.json) are not run again, killed ones "
                             "resume from their checkpoint")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at a time, each pinned to its own share of the cores")
    parser.add_argument("--dry_run", action="store_true",
                        help="print the commands of the runs still to do, run nothing")
    parser.add_argument("--collect_only", action="store_true",
                        help="run nothing; write results.md from the runs already in --runs")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs={args.jobs}: must be at least 1")
    runs = os.path.abspath(args.runs)
    if not args.collect_only:
        todo = [(setting, seed) for setting in args.settings for seed in args.seeds
                if not os.path.exists(os.path.join(run_dir(runs, setting, seed), "metrics.json"))]
        for setting, seed in todo:
            print(" ".join(command(setting, seed, runs)[1:]))
        if args.dry_run:
            return 0
        failed = run_all(todo, runs, args.jobs)
        if failed:
            print("failed (see their log.txt; rerun this script to resume): "
                  + ", ".join(f"{s} seed {n}" for s, n in failed), file=sys.stderr)
            return 1
    text = results_table(args.settings, args.seeds, runs)
    os.makedirs(runs, exist_ok=True)
    atomic_write_bytes(os.path.join(runs, "results.md"), text.encode())
    print(text)
    print(f"written to {os.path.join(runs, 'results.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
