"""A real-data recipe trained on your downloaded dataset, and its row "published vs measured".

  .venv/bin/python -m benchmarks.tables published \
      --recipe=flags/paper/pascal_deeplab2/cutmix_106.flags --data_dir=/data/VOC2012 \
      --backbone_weights=weights/resnet101.h5 --seeds 1 2 3 [-- more training flags]

Each seed is one run of the harness (`runs/results/published/<recipe>/seed_S`, reused while the
code, the machine and the thread count are the same, resumed when it was stopped). The published
figure is read from the recipe's header ("Paper: ..." or "Published: ..."); the seeds are given to
the flag its header repeats the cell with (--seed, or --split_seed where the paper's runs differ by
their labelled split). The row goes into the `published` table of BENCHMARKS.md, replacing an
earlier row of the same recipe: the published and the measured mIoU (each seed, their mean and
standard deviation), the code commit, the date, the device and the command (docs/paper.md,
"Checking a recipe against its published figure").
"""
import argparse
import datetime
import os
import re
import shutil
import subprocess

from benchmarks import harness

REGION = "published"
HEADER = ("| recipe | published mIoU | measured mIoU, per seed | measured, mean ± std | code commit "
          "| date | device | command |")
EMPTY = ("No recipe has been run on its dataset with this code yet: every real-data recipe's "
         "figure is the published one.")


def published_figure(text):
    """The mIoU (%) a recipe's header gives for its cell, as written, or None."""
    found = re.search(r"^# (?:Paper|Published): ([0-9.]+) mIoU", text, re.M)
    return found.group(1) if found else None


def seed_flag(text):
    """The flag the recipe's header repeats its cell with: 'split_seed' or 'seed'."""
    found = re.search(r"repeats it with --(\w+)=", text)
    return found.group(1) if found else "seed"


def device():
    """The GPUs this machine has (nvidia-smi's names), else its processor as the harness names it."""
    if shutil.which("nvidia-smi"):
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True)
        names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        if done.returncode == 0 and names:
            return f"{len(names)} x {names[0]}"
    return harness.describe_machine(harness.machine())


def table_text(rows):
    """The region's text: the rows ({recipe: row line}) in recipe order, or the empty sentence."""
    if not rows:
        return EMPTY
    return "\n".join([HEADER, "|---|---|---|---|---|---|---|---|", *(rows[r] for r in sorted(rows))])


def existing_rows(document):
    """{recipe: row line} of the region of `document` now."""
    with open(document) as f:
        text = f.read()
    begin = f"<!-- results:{REGION} -->"
    if begin not in text:
        raise SystemExit(f"error: {document}: no {begin} region to fill")
    region = text.split(begin, 1)[1].split(f"<!-- /results:{REGION} -->", 1)[0]
    rows = {}
    for line in region.splitlines():
        found = re.match(r"\| `([^`]+)` \|", line)
        if found:
            rows[found.group(1)] = line
    return rows


def main(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tables published",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", required=True, help="a flagfile of flags/paper or flags/beyond")
    parser.add_argument("--data_dir", required=True, help="the dataset, as downloaded")
    parser.add_argument("--backbone_weights", help="the network's pretrained weights (file or folder)")
    parser.add_argument("--split_file", help="the labelled images' list, where the recipe needs one")
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="one run each (default: the first its header names)")
    parser.add_argument("--runs", default="runs/results", help="folder of the run folders")
    parser.add_argument("--document", default="BENCHMARKS.md", help="the document to write the row in")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    extra = []
    if "--" in argv:
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    args = parser.parse_args(argv)
    recipe = os.path.relpath(os.path.abspath(args.recipe), harness.REPO)
    document, runs_folder = os.path.abspath(args.document), os.path.abspath(args.runs)
    os.chdir(harness.REPO)           # the recipes' nested flagfiles are relative to the repository
    if not recipe.startswith(("flags/paper/", "flags/beyond/")) or not os.path.isfile(recipe):
        parser.error(f"--recipe={args.recipe}: not a recipe of flags/paper or flags/beyond")
    with open(recipe) as f:
        text = f.read()
    flag = seed_flag(text)
    seeds = args.seeds or [int(v) for v in re.findall(rf"--{flag}=(\d+)", text)[:1]] or [0]
    given = [f"--data_dir={args.data_dir}"]
    given += [f"--{name}={getattr(args, name)}" for name in ("backbone_weights", "split_file")
              if getattr(args, name)]
    name = os.path.join("published", recipe[len("flags/"):-len(".flags")])
    runs = [harness.Run(runs_folder, name, recipe, seed,
                        [*given, *([f"--{flag}={seed}"] if flag != "seed" else []), *extra])
            for seed in seeds]
    metrics = harness.train_all(runs, args.jobs)
    measured = [100 * metrics[name, seed]["miou"] for seed in seeds]
    mean, std = harness.mean_std(measured)
    command = " ".join(["python -m benchmarks.tables published", f"--recipe={recipe}",
                        "--data_dir=...", *(f"--{n}=..." for n in ("backbone_weights", "split_file")
                                            if getattr(args, n)),
                        "--seeds", *map(str, seeds), *(["--", *extra] if extra else [])])
    row = (f"| `{recipe}` | {published_figure(text) or 'none'} | "
           + ", ".join(f"{v:.2f}" for v in measured) + f" | {mean:.2f} ± {std:.2f} | "
           f"{runs[0].record()['commit']} | {datetime.date.today().isoformat()} | {device()} | "
           f"`{command}` |")
    rows = existing_rows(document)
    rows[recipe] = row
    harness.replace_region(document, REGION, table_text(rows))
    print(row)
