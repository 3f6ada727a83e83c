"""Regenerates the results tables: trains what is missing, then rewrites the tables in place.

  .venv/bin/python -m benchmarks.tables            # every table
  .venv/bin/python -m benchmarks.tables demo       # one
  .venv/bin/python -m benchmarks.tables demo --jobs 2 --runs runs/results
  .venv/bin/python -m benchmarks.tables published --recipe=flags/paper/... --data_dir=...  # your data

Each table is data below: its rows (a name and a flagfile, plus flags), its seeds, and the
documents and marked regions (`<!-- results:NAME -->`) it fills. Runs go to RUNS/NAME/seed_S and
are reused while the code, the machine and the thread count stay the same (benchmarks/harness.py).
"""
import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import textwrap
import time

from benchmarks import deeplab_step, harness, labelling, litert, published, step_time
from benchmarks import input as input_pipeline
from semiseg_tf import compare_runs


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    flagfile: str
    extra: tuple = ()
    env: tuple = ()         # ((variable, value), ...) of the training's process
    note: str = ""          # what the row varies, for tables that compare variants
    prefix: tuple = ()      # a command the training runs under (taskset -c 0)


@dataclasses.dataclass(frozen=True)
class Table:
    rows: tuple
    seeds: tuple
    renderers: tuple        # (document, function(table, runs, metrics, command) -> markdown)


def class_iou_lines(table, metrics):
    """Markdown lines: each row's IoU per class, the mean of the seeds."""
    seeds = table.seeds
    classes = list(metrics[table.rows[0].name, seeds[0]]["per_class_iou"])
    lines = ["", "IoU per class (%), mean of the seeds:", "",
             "| method | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for row in table.rows:
        means = [harness.mean_std([100 * metrics[row.name, s]["per_class_iou"][c]
                                   for s in seeds])[0] for c in classes]
        lines.append(f"| {row.name} | " + " | ".join(f"{v:.1f}" for v in means) + " |")
    return lines


def seed_table(table, runs, metrics, command):
    """Markdown: mIoU per seed, mean and std per row; the mean IoU of each class; where it came from."""
    seeds, first = table.seeds, table.rows[0].name
    versus = len(table.rows) > 2             # two rows get the gain sentence instead
    noted = any(row.note for row in table.rows)
    lines = [textwrap.fill(harness.provenance(runs, command), 100), "",
             "| method | " + ("what it changes | " if noted else "")
             + " | ".join(f"seed {s}" for s in seeds) + " | mean | std |"
             + (f" vs {first}: mean ± std (per seed) |" if versus else ""),
             "|---|" + "---|" * (len(seeds) + 2 + versus + noted)]
    for row in table.rows:
        values = [100 * metrics[row.name, s]["miou"] for s in seeds]
        mean, std = harness.mean_std(values)
        cells = [row.name, *([row.note] if noted else []), *(f"{v:.2f}" for v in values),
                 f"{mean:.2f}", f"{std:.2f}"]
        if versus:
            gains = [100 * (metrics[row.name, s]["miou"] - metrics[first, s]["miou"])
                     for s in seeds]
            cells.append("" if row.name == first else "{:+.2f} ± {:.2f} ({})".format(
                *harness.mean_std(gains), ", ".join(f"{g:+.2f}" for g in gains)))
        lines.append("| " + " | ".join(cells) + " |")
    lines += class_iou_lines(table, metrics)
    if len(table.rows) == 2:
        lines += ["", textwrap.fill(gain_sentence(table, metrics), 100)]
    return "\n".join(lines)


def gain_sentence(table, metrics):
    first, second = (row.name for row in table.rows)
    gains = [100 * (metrics[second, s]["miou"] - metrics[first, s]["miou"]) for s in table.seeds]
    mean, std = harness.mean_std(gains)
    return (f"{second} - {first}: {mean:+.2f} ± {std:.2f} mIoU points over seeds "
            f"{', '.join(map(str, table.seeds))} (per seed: "
            + ", ".join(f"{g:+.2f}" for g in gains) + ").")


def demo_block(table, runs, metrics, command):
    """The README's demo table: seed 0 as `scripts/demo.sh` prints it, then the seeds' spread."""
    seed = table.seeds[0]
    printed = compare_runs.table([(row.name, metrics[row.name, seed]) for row in table.rows])
    spread = []
    for row in table.rows:
        mean, std = harness.mean_std([100 * metrics[row.name, s]["miou"] for s in table.seeds])
        spread.append(f"{row.name} {mean:.2f} ± {std:.2f}")
    prose = (f"That is seed {seed}, the demo's. Over seeds {', '.join(map(str, table.seeds))} the "
             "mIoU is " + " and ".join(spread) + "; " + gain_sentence(table, metrics)
             + " One seed's gain is one draw of that spread.")
    return "\n".join(["```", printed, "```", "", textwrap.fill(prose, 100), "",
                      textwrap.fill(f"*{harness.provenance(runs, command)}*", 100)])


def repeatability(table, runs, metrics, command):
    """Markdown: each variant's final mIoU, and whether its final weights equal the first row's
    bit for bit (every tensor of the last checkpoint)."""
    import numpy as np
    import tensorflow as tf

    def tensors(run):
        reader = tf.train.load_checkpoint(os.path.join(run.workdir, "checkpoints"))
        return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}

    reference = tensors(runs[0])
    lines = [textwrap.fill(harness.provenance(runs, command), 100), "",
             "| run | what differs from the first | mIoU | final weights |", "|---|---|---|---|"]
    for row, run in zip(table.rows, runs):
        weights = tensors(run)
        differ = [n for n in reference if not np.array_equal(reference[n], weights[n])]
        numeric = [n for n in differ if np.asarray(reference[n]).dtype.kind == "f"]
        largest = max((float(np.max(np.abs(reference[n] - weights[n]))) for n in numeric),
                      default=0.0)
        verdict = ("bit-identical" if not differ else
                   f"{len(differ)} of {len(reference)} tensors differ (largest difference "
                   f"{largest:.3g})")
        lines.append(f"| {row.name} | {row.note} | {100 * metrics[row.name, run.seed]['miou']:.2f} "
                     f"| {verdict} |")
    return "\n".join(lines)


def network_baselines(rows):
    """{network: the name of its first row}, for rows whose `note` names their network."""
    baselines = {}
    for row in rows:
        baselines.setdefault(row.note, row.name)
    return baselines


def networks_table(table, runs, metrics, command):
    """Markdown: mIoU per seed, mean and std of each row, and its gain over the first row of the
    same network (a row's `note` names its network); then the mean IoU of each class."""
    seeds = table.seeds
    baselines = network_baselines(table.rows)
    lines = [textwrap.fill(harness.provenance(runs, command), 100), "",
             "| method | network | " + " | ".join(f"seed {s}" for s in seeds)
             + " | mean | std | vs the network's baseline, mean ± std |",
             "|---|---|" + "---|" * (len(seeds) + 3)]
    for row in table.rows:
        values = [100 * metrics[row.name, s]["miou"] for s in seeds]
        mean, std = harness.mean_std(values)
        base = baselines[row.note]
        gain = "" if base == row.name else "{:+.2f} ± {:.2f}".format(*harness.mean_std(
            [100 * (metrics[row.name, s]["miou"] - metrics[base, s]["miou"]) for s in seeds]))
        lines.append(f"| {row.name} | {row.note} | " + " | ".join(f"{v:.2f}" for v in values)
                     + f" | {mean:.2f} | {std:.2f} | {gain} |")
    lines += class_iou_lines(table, metrics)
    return "\n".join(lines)


RARE_CLASS, RARE_KEEP = 5, 0.2
RARE = (f"--synthetic_rare_class={RARE_CLASS}", f"--synthetic_rare_keep={RARE_KEEP}")


def rare_class_table(table, runs, metrics, command):
    """Markdown: the rare class's IoU per seed (and the mIoU) with and without class weights, after
    the rare class's share of the pixels, computed by the dataset's own code."""
    from semiseg_tf.data import synthetic
    source = synthetic.SyntheticSource(rare_class=RARE_CLASS, rare_keep=RARE_KEEP)
    counts = source.class_pixel_counts()
    labelled, _ = source.labelled_split(10, 12345)
    name = synthetic.CLASS_NAMES[RARE_CLASS]
    share = 100 * counts[:, RARE_CLASS].sum() / counts.sum()
    labelled_share = 100 * counts[labelled, RARE_CLASS].sum() / counts[labelled].sum()
    seeds = table.seeds
    lines = [textwrap.fill(harness.provenance(runs, command), 100), "",
             textwrap.fill(f"The rare class: {name}, {share:.2f}% of the training pixels and "
                           f"{labelled_share:.2f}% of the {len(labelled)} labelled images' "
                           f"(`{' '.join(RARE)}`).", 100), "",
             f"| run | what it changes | {name} IoU, " + ", ".join(f"seed {s}" for s in seeds)
             + f" | {name} IoU, mean ± std | mIoU, mean ± std |", "|---|---|---|---|---|"]
    for row in table.rows:
        rare = [100 * metrics[row.name, s]["per_class_iou"][name] for s in seeds]
        miou = [100 * metrics[row.name, s]["miou"] for s in seeds]
        lines.append(f"| {row.name} | {row.note} | {', '.join(f'{v:.2f}' for v in rare)} | "
                     "{:.2f} ± {:.2f} | ".format(*harness.mean_std(rare))
                     + "{:.2f} ± {:.2f} |".format(*harness.mean_std(miou)))
    return "\n".join(lines)


BASELINE, CUTMIX = Row("baseline", "flags/demo/baseline.flags"), Row("cutmix", "flags/demo/cutmix.flags")
NO_BN = ("--nobn_stats_from_unlabelled",)
PUBLISHED = "flags/demo/as_published"
# OHEM at UniMatch's Cityscapes threshold, keeping at least its share of the batch (200,000 of two
# 801x801 crops) of the demo's 8 64x64 crops.
OHEM = ("--ohem_thresh=0.7", f"--ohem_min_kept={round(200000 * 8 * 64 ** 2 / (2 * 801 ** 2))}")

TABLES = {
    # The main job of scripts/demo.sh, and how much one seed of it varies.
    "demo": Table(rows=(BASELINE, CUTMIX), seeds=(0, 1, 2),
                  renderers=(("README.md", demo_block), ("BENCHMARKS.md", seed_table))),
    # The paper's six methods (its Table 1 rows) through one trainer, with the paper's weights, with
    # the authors' batch-norm behaviour (the default) and without it (_nobn).
    "methods": Table(rows=(BASELINE, CUTMIX,
                           Row("cutout", "flags/demo/cutout.flags"),
                           Row("augment", "flags/demo/augment.flags"),
                           Row("ict", "flags/demo/ict.flags"),
                           Row("vat", "flags/demo/vat.flags"),
                           Row("cutmix_nobn", "flags/demo/cutmix.flags", extra=NO_BN),
                           Row("cutout_nobn", "flags/demo/cutout.flags", extra=NO_BN),
                           Row("augment_nobn", "flags/demo/augment.flags", extra=NO_BN),
                           Row("ict_nobn", "flags/demo/ict.flags", extra=NO_BN),
                           Row("vat_nobn", "flags/demo/vat.flags", extra=NO_BN)),
                     seeds=(0, 1, 2), renderers=(("BENCHMARKS.md", seed_table),)),
    # Why Cutout falls below the baseline here: its batch-norm behaviour, its boxes against the
    # dataset's objects, and its mask (the box kept or the box erased).
    "cutout": Table(
        rows=(Row("baseline", "flags/demo/baseline.flags", note="no unlabelled images"),
              Row("cutout", "flags/demo/cutout.flags",
                  note="the paper's: the student sees one box of U(0, 1) of the crop's area"),
              Row("cutout_nobn", "flags/demo/cutout.flags", extra=NO_BN,
                  note="the same, batch-norm statistics from the labelled pass only"),
              Row("cutout_large_boxes", "flags/demo/cutout.flags",
                  extra=("--mask_prop_range=0.5:1.0",), note="a box of U(0.5, 1) of the area"),
              Row("cutout_large_boxes_nobn", "flags/demo/cutout.flags",
                  extra=("--mask_prop_range=0.5:1.0", *NO_BN),
                  note="a box of U(0.5, 1), statistics from the labelled pass"),
              Row("cutout_erase_box", "flags/demo/cutout.flags", extra=("--boxmask_no_invert",),
                  note="the box erased instead: the student sees the rest")),
        seeds=(0, 1, 2), renderers=(("BENCHMARKS.md", seed_table),)),
    # The paper's CutMix beside FixMatch and UniMatch, each with the strong view adapted to this
    # dataset (flags/demo/) and as published (flags/demo/as_published/).
    "weak_to_strong": Table(
        rows=(BASELINE, CUTMIX,
              Row("fixmatch", "flags/demo/fixmatch.flags"),
              Row("fixmatch_published", f"{PUBLISHED}/fixmatch.flags"),
              Row("unimatch", "flags/demo/unimatch.flags"),
              Row("unimatch_published", f"{PUBLISHED}/unimatch.flags")),
        seeds=(0, 1, 2), renderers=(("BENCHMARKS.md", seed_table),)),
    # What of the published strong view costs FixMatch here: each step from the published view to
    # the adapted one turns one piece off.
    "strong_view": Table(
        rows=(Row("baseline", "flags/demo/baseline.flags", note="no unlabelled images"),
              Row("fixmatch_published", f"{PUBLISHED}/fixmatch.flags",
                  note="as published: hue 0.25, greyscale 0.2, blur sigma 0.1-2.0 px"),
              Row("fixmatch_published_nohue", f"{PUBLISHED}/fixmatch.flags",
                  extra=("--aug_colour_hue=0",), note="no hue jitter"),
              Row("fixmatch_published_nohue_nogrey", f"{PUBLISHED}/fixmatch.flags",
                  extra=("--aug_colour_hue=0", "--aug_colour_greyscale_prob=0"),
                  note="no hue jitter, no greyscale"),
              Row("fixmatch", "flags/demo/fixmatch.flags",
                  note="no hue jitter, no greyscale, blur scaled from 321 px crops (adapted)")),
        seeds=(0, 1, 2), renderers=(("BENCHMARKS.md", seed_table),)),
    # The tiny DINOv2 network (random weights) beside the U-net, through baseline, CutMix and
    # UniMatch V2 (adapted to this dataset, and as published).
    "dinov2": Table(
        rows=(Row("baseline", "flags/demo/baseline.flags", note="U-net"),
              Row("cutmix", "flags/demo/cutmix.flags", note="U-net"),
              Row("unimatch_v2", "flags/demo/unimatch_v2.flags", note="U-net"),
              Row("unimatch_v2_published", f"{PUBLISHED}/unimatch_v2.flags", note="U-net"),
              Row("dinov2_baseline", "flags/demo/dinov2_baseline.flags", note="DINOv2 tiny"),
              Row("dinov2_cutmix", "flags/demo/dinov2_cutmix.flags", note="DINOv2 tiny"),
              Row("dinov2_unimatch_v2", "flags/demo/dinov2_unimatch_v2.flags",
                  note="DINOv2 tiny"),
              Row("dinov2_unimatch_v2_published", f"{PUBLISHED}/dinov2_unimatch_v2.flags",
                  note="DINOv2 tiny"),
              # Why the adapted row gains less on this network than on the U-net: its two strong
              # views without the complementary dropout of a 32-channel encoder's features.
              Row("dinov2_unimatch_v2_nocomp", "flags/demo/dinov2_unimatch_v2.flags",
                  extra=("--nocomp_dropout",), note="DINOv2 tiny"),
              # Three more differences from the CutMix row, which gains on this network: UniMatch
              # V2 keeps only the pixels where its teacher is 95% sure (CutMix scales by their
              # share), it halves the supervised loss (CutMix keeps it whole), and it trains on
              # the teacher's hard labels (CutMix on its probabilities, squared differences).
              Row("dinov2_unimatch_v2_thresh0", "flags/demo/dinov2_unimatch_v2.flags",
                  extra=("--conf_thresh=0",), note="DINOv2 tiny"),
              Row("dinov2_unimatch_v2_sup1", "flags/demo/dinov2_unimatch_v2.flags",
                  extra=("--sup_weight=1", "--cons_weight=1"), note="DINOv2 tiny"),
              Row("dinov2_unimatch_v2_soft", "flags/demo/dinov2_unimatch_v2.flags",
                  extra=("--cons_loss_fn=var",), note="DINOv2 tiny"),
              # The two differences left: the strong view's colour jitter and blur (CutMix's
              # student sees neither), and the teacher's slower average (0.996 after a warm-up;
              # CutMix's is 0.99 from the start).
              Row("dinov2_unimatch_v2_nocolour", "flags/demo/dinov2_unimatch_v2.flags",
                  extra=("--noaug_strong_colour", "--aug_strong_blur=0"), note="DINOv2 tiny"),
              Row("dinov2_unimatch_v2_ema099", "flags/demo/dinov2_unimatch_v2.flags",
                  extra=("--teacher_alpha=0.99", "--noteacher_alpha_warmup"),
                  note="DINOv2 tiny")),
        seeds=(0, 1, 2), renderers=(("BENCHMARKS.md", networks_table),)),
    # A class made rare on the embedded dataset: CutMix without and with class weights, with OHEM,
    # and with twice the labelled images.
    "rare_class": Table(
        rows=(Row("cutmix_rare", "flags/demo/cutmix.flags", extra=RARE, note="none"),
              Row("cutmix_rare_inverse", "flags/demo/cutmix.flags",
                  extra=(*RARE, "--class_weights=inverse"), note="inverse frequency weights"),
              Row("cutmix_rare_median", "flags/demo/cutmix.flags",
                  extra=(*RARE, "--class_weights=median"), note="median frequency weights"),
              Row("cutmix_rare_ohem", "flags/demo/cutmix.flags", extra=(*RARE, *OHEM),
                  note=f"OHEM (`{' '.join(OHEM)}`)"),
              Row("cutmix_rare_20_labels", "flags/demo/cutmix.flags",
                  extra=(*RARE, "--n_sup=20"), note="20 labelled images instead of 10")),
        seeds=(0, 1, 2), renderers=(("BENCHMARKS.md", rare_class_table),)),
    # The demo's two methods computed in bfloat16 beside float32: whether --mixed_precision=auto
    # may become the default (on processors without native bfloat16 it is slow, not wrong).
    "precision": Table(
        rows=(Row("baseline", "flags/demo/baseline.flags", note="float32"),
              Row("cutmix", "flags/demo/cutmix.flags", note="float32"),
              Row("baseline_bfloat16", "flags/demo/baseline.flags",
                  extra=("--mixed_precision=bfloat16",), note="bfloat16"),
              Row("cutmix_bfloat16", "flags/demo/cutmix.flags",
                  extra=("--mixed_precision=bfloat16",), note="bfloat16")),
        seeds=(0, 1, 2), renderers=(("BENCHMARKS.md", seed_table),)),
    # What changes the digits of a run, and what does not: the demo's baseline, seed 0.
    "repeatability": Table(
        rows=(Row("baseline", "flags/demo/baseline.flags", note="the demo's run"),
              Row("baseline_again", "flags/demo/baseline.flags",
                  note="nothing: the same command in another folder"),
              Row("baseline_1_thread", "flags/demo/baseline.flags",
                  env=(("TF_NUM_INTRAOP_THREADS", "1"),),
                  note="`TF_NUM_INTRAOP_THREADS=1` (one thread instead of one per core)"),
              Row("baseline_one_core", "flags/demo/baseline.flags",
                  env=(("TF_NUM_INTRAOP_THREADS", "2"),), prefix=("taskset", "-c", "0"),
                  note="on one core (`taskset -c 0`) with `TF_NUM_INTRAOP_THREADS=2`: the first "
                       "row's thread count on another core count"),
              Row("baseline_avx2", "flags/demo/baseline.flags",
                  env=(("ONEDNN_MAX_CPU_ISA", "AVX2"),),
                  note="`ONEDNN_MAX_CPU_ISA=AVX2`: oneDNN's kernels as on a processor without "
                       "AVX-512")),
        seeds=(0,), renderers=(("BENCHMARKS.md", repeatability),)),
}


def demo_time(command):
    """Times `bash scripts/demo.sh` from nothing (the environment set up already) and checks that
    the table it prints is the README's, digit for digit; the README's sentence about it."""
    folder = "runs/results/demo_timing"
    shutil.rmtree(folder, ignore_errors=True)
    # The demo reuses an export of the same scores, which a retrained run has: timed, it exports.
    shutil.rmtree(f"saved_models/{os.path.basename(folder)}_cutmix", ignore_errors=True)
    # A process of its own, whose children are the demo's alone: this one's may include the
    # trainings of the tables made before (their memory would count in ru_maxrss).
    timer = ("import resource, subprocess, sys, time\n"
             "start = time.time()\n"
             f"code = subprocess.run(['bash', 'scripts/demo.sh', {folder!r}]).returncode\n"
             "print(time.time() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
             " file=sys.stderr)\n"
             "sys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", timer], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"error: scripts/demo.sh failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    seconds, max_rss = (float(v) for v in done.stderr.strip().splitlines()[-1].split())
    printed = done.stdout.split("== results")[1].split("\n", 1)[1].split("== export")[0].strip()
    with open("README.md") as f:
        shown = f.read().split("<!-- results:demo -->")[1].split("```")[1].strip()
    if printed != shown:
        raise SystemExit("error: the demo printed another table than the README's (run "
                         f"`python -m benchmarks.tables demo` first):\n{printed}\n---\n{shown}")
    # ru_maxrss is in KiB: the largest of the demo's processes (each training is one).
    peak = max_rss / 2 ** 20
    info = harness.machine()
    return textwrap.fill(
        f"With the environment set up, the demo takes {seconds // 60:.0f} min {seconds % 60:.0f} s "
        f"and peaks at {peak:.1f} GiB of memory, and prints the table above digit for digit "
        f"(measured alone at code commit {harness.code_commit()}, {time.strftime('%Y-%m-%d')}, "
        f"on {harness.describe_machine(info)}; regenerate: `{command}`).", 100)


STEP_TIME_STEPS = 200


def step_times(command):
    """The training step of each method of the dinov2 table and of the precision table's bfloat16
    rows, each run alone (one training at a time): steps/s, ms per step, and the step relative to
    its network's baseline (in float32)."""
    rows = [row for row in TABLES["dinov2"].rows if not row.flagfile.startswith(PUBLISHED)]
    # The demo's two U-net rows in bfloat16 (the precision table's), after the U-net's rows.
    bfloat16 = [dataclasses.replace(row, note="U-net") for row in TABLES["precision"].rows
                if row.note == "bfloat16"]
    unet = sum(row.note == "U-net" for row in rows)
    rows = rows[:unet] + bfloat16 + rows[unet:]
    rates = {row.name: step_time.steps_per_second(row.flagfile, STEP_TIME_STEPS, row.extra)
             for row in rows}
    baselines = network_baselines(rows)
    lines = [textwrap.fill(
        f"Code at commit {harness.code_commit()}; measured {time.strftime('%Y-%m-%d')} on "
        f"{harness.describe_machine(harness.machine())}, each alone for {STEP_TIME_STEPS} steps "
        "(the median rate of the progress lines after the first, which holds the tracing). "
        f"Regenerate: `{command}`.", 100), "",
        "| method | network | steps/s | ms per step | vs the network's baseline |",
        "|---|---|---|---|---|"]
    for row in rows:
        base = baselines[row.note]
        rate = rates[row.name]
        lines.append(f"| {row.name} | {row.note} | {rate:.1f} | {1000 / rate:.0f} | "
                     f"{rates[base] / rate:.2f}x |")
    return "\n".join(lines)


# Measurements that are not tables of trainings: name -> function(command) -> (document, text).
# Tables made otherwise than from independent runs: name -> function(command, the parsed
# arguments) -> (document, markdown).
MEASUREMENTS = {
    "demo_time": lambda command, args: ("README.md", demo_time(command)),
    "litert": lambda command, args: ("BENCHMARKS.md", litert.measure(command, args.runs)),
    "step_time": lambda command, args: ("BENCHMARKS.md", step_times(command)),
    "deeplab_step": lambda command, args: ("BENCHMARKS.md", deeplab_step.measure(command)),
    "input_pipeline": lambda command, args: ("BENCHMARKS.md",
                                             input_pipeline.table(command, args.runs)),
    # Runs of the labelling loop, where each round's training depends on the last's selection.
    "labelling": lambda command, args: labelling.table(command, args.runs, args.jobs),
}


def main():
    if sys.argv[1:2] == ["published"]:
        return published.main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tables", nargs="*", metavar="TABLE",
                        help=f"which tables (default: all of {', '.join([*TABLES, *MEASUREMENTS])}; "
                             "demo_time, step_time and deeplab_step are timings: run them alone on "
                             "the machine)")
    parser.add_argument("--runs", default="runs/results", help="folder of the run folders")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trainings at a time (their numbers do not depend on it, their "
                             "times do)")
    args = parser.parse_args()
    unknown = [name for name in args.tables if name not in {**TABLES, **MEASUREMENTS}]
    if unknown:
        parser.error(f"unknown table {unknown[0]!r}; the tables are "
                     f"{', '.join([*TABLES, *MEASUREMENTS])}")
    os.chdir(harness.REPO)           # the run folders' names are relative to the repository
    for name in args.tables or [*TABLES, *MEASUREMENTS]:
        command = f".venv/bin/python -m benchmarks.tables {name}"
        if name in MEASUREMENTS:
            document, text = MEASUREMENTS[name](command, args)
            harness.replace_region(f"{harness.REPO}/{document}", name, text)
            print(f"{name}: wrote it into {document}")
            continue
        table = TABLES[name]
        runs = [harness.Run(args.runs, row.name, row.flagfile, seed, row.extra, dict(row.env),
                            row.prefix)
                for seed in table.seeds for row in table.rows]
        metrics = harness.train_all(runs, args.jobs)
        for document, render in table.renderers:
            harness.replace_region(f"{harness.REPO}/{document}", name,
                                   render(table, runs, metrics, command))
            print(f"{name}: wrote its table into {document}")


if __name__ == "__main__":
    main()
