"""The labelling loop, simulated on the embedded dataset: its masks stand in for the annotator.

  .venv/bin/python -m benchmarks.tables labelling --jobs 2    # trains what is missing, then writes

The dataset's training and validation scenes are written once as a folder dataset (images/,
masks/, val/; docs/data.md). Every strategy starts, for each seed, from the same START labelled
images (drawn by the seed) and the demo's CutMix recipe on them; then, ROUNDS times, `select`
chooses BUDGET more from the images not labelled yet (the pool, linked into a folder of its own),
their masks join the labelled list (`--split_file`), and the recipe trains again from the start.
`random` is `select --select_by=random`. The table gives the validation mIoU after each round, mean
and std over the seeds, per strategy; the plot (docs/labelling/curves.png) the curves with their
spread. A last row trains the demo's supervised baseline on random's first and last labelled lists:
what more random labels give without the unlabelled images. Runs are kept and reused as the other
tables' are (benchmarks/harness.py).
"""
import concurrent.futures
import os
import random
import shutil
import subprocess
import sys
import textwrap

from benchmarks import harness

RECIPE = "flags/demo/cutmix.flags"
SUPERVISED = "flags/demo/baseline.flags"
START, BUDGET, ROUNDS = 10, 10, 3
SEEDS = (0, 1, 2)
TRAIN_IMAGES, VAL_IMAGES = 1000, 200
# name -> select's flags; every strategy but random keeps select's default diversity term.
STRATEGIES = {
    "random": ("--select_by=random",),
    "entropy": ("--select_by=entropy",),
    "margin": ("--select_by=margin",),
    "disagreement": ("--select_by=disagreement",),
    "entropy_no_diversity": ("--select_by=entropy", "--nodiversity"),
    "unsure": ("--select_by=unsure",),
    "entropy_rare_classes": ("--select_by=entropy", "--rare_classes"),
}
PLOT = "docs/labelling/curves.png"     # from the repository's root, as BENCHMARKS.md links it


def write_dataset(folder):
    """The embedded dataset's scenes as a folder dataset (once: kept while its last file is)."""
    from semiseg_tf.data import synthetic
    if os.path.exists(os.path.join(folder, "classes.txt")):
        return
    synthetic.write_samples(folder, TRAIN_IMAGES, split="train")
    synthetic.write_samples(os.path.join(folder, "val"), VAL_IMAGES, split="val")
    with open(os.path.join(folder, "classes.txt"), "w") as f:
        f.write("".join(f"{name}\n" for name in synthetic.CLASS_NAMES))


def names(folder):
    return sorted(os.path.splitext(n)[0] for n in os.listdir(os.path.join(folder, "images")))


class Chain:
    """One strategy and seed: the labelled list after each round, and each round's run."""

    def __init__(self, root, strategy, seed):
        self.root, self.strategy, self.seed = root, strategy, seed
        self.data, self.prepared = os.path.join(root, "data"), os.path.join(root, "prepared")
        self.folder = os.path.join(root, strategy, f"seed_{seed}")

    def split_file(self, round_):
        """The labelled list of round `round_`: round 0's is the seed's draw, shared by every
        strategy (`start_lists`); a later round's is the chain's own."""
        if round_ == 0:
            return start_file(self.root, self.seed)
        return os.path.join(self.folder, f"labelled_{START + BUDGET * round_}.txt")

    def run(self, round_, supervised=False):
        """Round `round_`'s training: the CutMix recipe, or the supervised baseline's."""
        labelled = START + BUDGET * round_
        # Round 0 is the same training for every strategy: one run, under its own name.
        name = "start" if round_ == 0 else f"{self.strategy}_{labelled}"
        if supervised:
            name = f"supervised_{self.strategy}_{labelled}"
        return harness.Run(self.root, name, SUPERVISED if supervised else RECIPE, self.seed,
                           extra=("--dataset=folder", f"--data_dir={self.data}",
                                  f"--prepared_dir={self.prepared}",
                                  f"--split_file={self.split_file(round_)}",
                                  f"--n_sup={labelled}"))

    def labelled(self, round_):
        with open(self.split_file(round_)) as f:
            return [line.strip() for line in f if line.strip()]

    def select(self, round_, log):
        """Writes round `round_ + 1`'s labelled list: round `round_`'s and what `select` chooses
        with its run from the rest (kept when already written)."""
        target = self.split_file(round_ + 1)
        if os.path.exists(target):
            return
        labelled = self.labelled(round_)
        work = os.path.join(self.folder, f"select_{round_ + 1}")
        shutil.rmtree(work, ignore_errors=True)
        pool = os.path.join(work, "pool")
        os.makedirs(pool)
        taken = set(labelled)
        for name in names(self.data):
            if name not in taken:
                os.link(os.path.join(self.data, "images", f"{name}.png"),
                        os.path.join(pool, f"{name}.png"))
        chosen = os.path.join(work, "to_label")
        subprocess.run([sys.executable, "-m", "semiseg_tf.select",
                        f"--workdir={self.run(round_).workdir}", f"--pool={pool}",
                        f"--budget={BUDGET}", f"--to_label={chosen}",
                        f"--selection_seed={self.seed}", *STRATEGIES[self.strategy]],
                       cwd=harness.REPO, check=True, stdout=log, stderr=subprocess.STDOUT)
        with open(os.path.join(chosen, "labelled.txt")) as f:
            new = [line.strip() for line in f if line.strip()]
        with open(target + ".part", "w") as f:
            f.write("".join(f"{name}\n" for name in labelled + new))
        os.replace(target + ".part", target)
        shutil.rmtree(pool)

    def go(self, log=sys.stdout):
        """Trains and selects through every round; {labelled count: metrics}."""
        os.makedirs(self.folder, exist_ok=True)
        results = {}
        for round_ in range(ROUNDS + 1):
            if round_:
                with open(os.path.join(self.folder, f"select_{round_}.log"), "a") as out:
                    self.select(round_ - 1, out)
            results[START + BUDGET * round_] = self.run(round_).train(log)
        return results


def start_file(root, seed):
    return os.path.join(root, "start", f"labelled_{START}_seed_{seed}.txt")


def start_lists(root):
    """Each seed's START labelled images, drawn from the training images by the seed."""
    os.makedirs(os.path.join(root, "start"), exist_ok=True)
    for seed in SEEDS:
        path = start_file(root, seed)
        if not os.path.exists(path):
            drawn = random.Random(seed).sample(names(os.path.join(root, "data")), START)
            with open(path, "w") as f:
                f.write("".join(f"{name}\n" for name in drawn))


def table(command, runs="runs/results", jobs=1):
    """Runs the loop (what is missing) and returns ('BENCHMARKS.md', the table's markdown)."""
    root = os.path.join(runs, "labelling")
    write_dataset(os.path.join(root, "data"))
    start_lists(root)
    subprocess.run([sys.executable, "-m", "semiseg_tf.prepare", "--dataset=folder",
                    f"--data_dir={os.path.join(root, 'data')}",
                    f"--prepared_dir={os.path.join(root, 'prepared')}"],
                   cwd=harness.REPO, check=True, stdout=subprocess.DEVNULL)
    chains = [Chain(root, strategy, seed) for strategy in STRATEGIES for seed in SEEDS]
    # Round 0 first (shared), then the chains, `jobs` at a time.
    harness.train_all([chains[s].run(0) for s in range(len(SEEDS))], jobs)
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        done = {(c.strategy, c.seed): pool.submit(c.go) for c in chains}
        results = {key: future.result() for key, future in done.items()}
    # The supervised baseline on random's first and last lists.
    supervised = {(chain.seed, r): chain.run(r, supervised=True)
                  for chain in chains if chain.strategy == "random" for r in (0, ROUNDS)}
    trained = harness.train_all(list(supervised.values()), jobs)
    supervised_metrics = {key: trained[run.name, run.seed] for key, run in supervised.items()}
    all_runs = [c.run(r) for c in chains for r in range(ROUNDS + 1)] + list(supervised.values())
    counts = [START + BUDGET * r for r in range(ROUNDS + 1)]
    curves = {strategy: [harness.mean_std([100 * results[strategy, s][n]["miou"] for s in SEEDS])
                         for n in counts] for strategy in STRATEGIES}
    os.makedirs(os.path.dirname(os.path.join(harness.REPO, PLOT)), exist_ok=True)
    draw(curves, counts, os.path.join(harness.REPO, PLOT))
    lines = [textwrap.fill(harness.provenance(all_runs, command), 100), "",
             "| strategy | " + " | ".join(f"{n} labelled" for n in counts) + " |",
             "|---|" + "---|" * len(counts)]
    for strategy, points in curves.items():
        lines.append(f"| {strategy} | " + " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in points)
                     + " |")
    cells = []
    for r in range(ROUNDS + 1):
        if r in (0, ROUNDS):
            values = [100 * supervised_metrics[seed, r]["miou"] for seed in SEEDS]
            cells.append("{:.2f} ± {:.2f}".format(*harness.mean_std(values)))
        else:
            cells.append("")
    lines.append("| random, supervised baseline (no unlabelled images) | " + " | ".join(cells)
                 + " |")
    # Each seed's chains share their start, so a strategy is compared with random seed by seed.
    lines += ["", textwrap.fill("Gain over random selection after each round, seed by seed (each "
                                "seed's chains start from the same images), mean ± std (per "
                                "seed):", 100), "",
              "| strategy | " + " | ".join(f"{n} labelled" for n in counts[1:]) + " |",
              "|---|" + "---|" * (len(counts) - 1)]
    for strategy in STRATEGIES:
        if strategy == "random":
            continue
        cells = []
        for n in counts[1:]:
            gains = [100 * (results[strategy, s][n]["miou"] - results["random", s][n]["miou"])
                     for s in SEEDS]
            mean, std = harness.mean_std(gains)
            cells.append(f"{mean:+.2f} ± {std:.2f} ({', '.join(f'{g:+.2f}' for g in gains)})")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    lines += ["", f"![mIoU against labelled images, per strategy]({PLOT})"]
    return "BENCHMARKS.md", "\n".join(lines)


def draw(curves, counts, path, size=(640, 400)):
    """A PNG of each strategy's mean mIoU against the labelled count, with a band of ± one std."""
    from PIL import Image, ImageDraw
    width, height = size
    left, right, top, bottom = 60, 150, 20, 40
    values = [m + d * s for points in curves.values() for m, s in points for d in (-1, 1)]
    low, high = min(values) - 1, max(values) + 1

    def at(count, value):
        x = left + (count - counts[0]) / (counts[-1] - counts[0]) * (width - left - right)
        y = top + (high - value) / (high - low) * (height - top - bottom)
        return x, y

    image = Image.new("RGB", size, "white")
    pen = ImageDraw.Draw(image, "RGBA")
    pen.line([at(counts[0], low), at(counts[-1], low)], fill="black")
    pen.line([at(counts[0], low), at(counts[0], high)], fill="black")
    for count in counts:
        x, y = at(count, low)
        pen.text((x - 8, y + 6), str(count), fill="black")
    for step in range(int(low) + 1, int(high) + 1):
        if step % 2 == 0:
            x, y = at(counts[0], step)
            pen.text((x - 30, y - 6), str(step), fill="black")
    pen.text((left, height - 16), "labelled images", fill="black")
    pen.text((4, 4), "mIoU (%)", fill="black")
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
               (140, 86, 75), (227, 119, 194)]
    for k, (strategy, points) in enumerate(curves.items()):
        colour = colours[k % len(colours)]
        band = ([at(n, m + s) for n, (m, s) in zip(counts, points)]
                + [at(n, m - s) for n, (m, s) in reversed(list(zip(counts, points)))])
        pen.polygon(band, fill=(*colour, 40))
        pen.line([at(n, m) for n, (m, _) in zip(counts, points)], fill=colour, width=2)
        pen.text((width - right + 10, top + 16 * k), strategy, fill=colour)
    image.save(path)
