"""Runs one of the paper's tables over its seeds and writes the results beside the paper's figures.

  .venv/bin/python -m semiseg_tf.paper.tables TABLE [--family paper|paper_as_run] [--seeds 1 2]
      [--cells cutmix_106 ...] [--runs DIR] [--dry_run] [--collect_only] [TRAIN FLAGS ...]

TABLE is a folder of flags/FAMILY/ (see recipes.py: `paper`, the cells as the paper
states them; `paper_as_run`, as the authors' code ran them). Each cell runs once per seed into
RUNS/TABLE/CELL_SEED (default RUNS=runs/FAMILY); flags this script does not know (--data_dir,
--backbone_weights, ...) are passed to every run. Then RUNS/TABLE/results.md holds, per cell, the mean
and standard deviation of the final mIoU over the finished runs, and the paper's figure.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from semiseg_tf.files import atomic_write_bytes
from semiseg_tf.paper import recipes


def cells(table_name):
    """[(method, size index, cell name)] of a table, in table order."""
    table = recipes.TABLES[table_name]
    return [(method, i, f"{method}_{recipes.size_name(n)}")
            for method, values in table["results"].items()
            for i, n in enumerate(table["sizes"]) if values[i] is not None]


def run_commands(table_name, seeds, chosen, runs_dir, extra, family=recipes.OUT):
    seed_flag = recipes.TABLES[table_name]["seeds"][0]
    commands = []
    for _, _, cell in cells(table_name):
        if chosen and cell not in chosen:
            continue
        for seed in seeds:
            commands.append([sys.executable, "-m", "semiseg_tf.train",
                             f"--flagfile={family}/{table_name}/{cell}.flags",
                             f"--{seed_flag}={seed}",
                             f"--workdir={os.path.join(runs_dir, table_name, f'{cell}_{seed}')}"]
                            + extra)
    return commands


def results_table(table_name, seeds, runs_dir):
    """The markdown table: rows = methods, columns = labelled-set sizes; 'ours mean ± std (runs) /
    paper'."""
    table = recipes.TABLES[table_name]
    sizes = [recipes.size_name(n) for n in table["sizes"]]
    lines = [f"# {table['title']}",
             "",
             f"Final validation mIoU (%) of the EMA teacher, mean ± standard deviation over the "
             f"finished runs (--{table['seeds'][0]} in {', '.join(map(str, seeds))}), then the "
             "paper's figure.",
             "",
             "| method | " + " | ".join(f"{s} labelled" for s in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for method, values in table["results"].items():
        row = []
        for index, paper in enumerate(values):
            if paper is None:
                row.append("")
                continue
            cell = f"{method}_{sizes[index]}"
            scores = []
            for seed in seeds:
                path = os.path.join(runs_dir, table_name, f"{cell}_{seed}", "metrics.json")
                if os.path.exists(path):
                    with open(path) as f:
                        scores.append(100 * json.load(f)["miou"])
            if not scores:
                ours = "not run"
            elif len(scores) == 1:
                ours = f"{scores[0]:.2f} (1 run)"
            else:
                ours = f"{statistics.mean(scores):.2f} ± {statistics.stdev(scores):.2f} ({len(scores)} runs)"
            row.append(f"{ours} / {paper:.2f}")
        lines.append(f"| {recipes.METHODS[method][0]} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=f"tables: {', '.join(recipes.TABLES)}")
    parser.add_argument("table", choices=sorted(recipes.TABLES),
                        help="which paper table to run")
    parser.add_argument("--seeds", nargs="+", type=int, help="default: the paper's (see the recipes)")
    parser.add_argument("--cells", nargs="+", help="only these cells, e.g. cutmix_106 baseline_106")
    parser.add_argument("--family", choices=[os.path.basename(f) for f in recipes.FAMILIES],
                        default="paper", help="the cells as the paper states them, or as the "
                        "authors' code ran them")
    parser.add_argument("--runs", help="runs folder (default runs/FAMILY)")
    parser.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--collect_only", action="store_true", help="only write results.md")
    args, extra = parser.parse_known_args()
    family = os.path.join("flags", args.family)
    args.runs = args.runs or os.path.join("runs", args.family)
    seeds = args.seeds or list(recipes.TABLES[args.table]["seeds"][1])
    known = {cell for _, _, cell in cells(args.table)}
    unknown = sorted(set(args.cells or ()) - known)
    if unknown:
        parser.error(f"--cells: {', '.join(unknown)} not in {args.table} ({', '.join(sorted(known))})")
    if not args.collect_only:
        commands = run_commands(args.table, seeds, args.cells, args.runs, extra, family)
        for number, command in enumerate(commands, 1):
            print(f"[{number}/{len(commands)}] {' '.join(command[1:])}", flush=True)
            if not args.dry_run:
                code = subprocess.call(command)
                if code != 0:
                    print(f"run failed (exit {code}); rerun this script to resume", file=sys.stderr)
                    return code
    if args.dry_run:
        return 0
    text = results_table(args.table, seeds, args.runs)
    os.makedirs(os.path.join(args.runs, args.table), exist_ok=True)
    path = os.path.join(args.runs, args.table, "results.md")
    atomic_write_bytes(path, text.encode())
    print(text)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
