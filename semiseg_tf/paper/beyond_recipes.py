"""Writes the recipes beyond the paper: FixMatch and UniMatch (Yang et al., CVPR 2023) on Pascal VOC and
Cityscapes with DeepLab v3+ ResNet-101, and UniMatch V2 (Yang et al., TPAMI 2025) with DINOv2-S and -B,
one flagfile per cell, into flags/beyond/.

  .venv/bin/python -m semiseg_tf.paper.beyond_recipes          # rewrite flags/beyond/
  .venv/bin/python -m semiseg_tf.paper.beyond_recipes --check  # exit 1 if it differs

The hyper-parameters are those of UniMatch's code (configs/pascal.yaml, configs/cityscapes.yaml,
dataset/semi.py, unimatch.py, fixmatch.py): SGD with momentum 0.9 and weight decay 1e-4, the head at
10x the backbone's rate on Pascal (1x on Cityscapes), poly decay, 80 (Pascal) or 240 (Cityscapes)
epochs over the unlabelled images at a global batch of 8 labelled and 8 unlabelled images (their 4
or 8 GPUs), the student as its own target, pseudo-labels at 0.95 confidence, the strong view's
colour jitter, greyscale, blur and CutMix box, and (loss_x + loss_u) / 2. Each file starts with the
published mIoU of its cell (or says there is none), the GPUs it needs, whether it has been run,
what differs from the original runs and the command that runs it. A test checks that the folder
holds what this script writes, so edit the tables here, not the files.

What differs from UniMatch's runs, and why (each file lists its own): this project's DeepLab v3+ is the
paper's (output stride 8, ASPP dilations 12/24/36 where UniMatch's Pascal network has stride 16 and
6/12/18), its batch norm trained as UniMatch's (--nofreeze_bn); the scale augmentation draws log-
uniformly from [1/2, 2] where UniMatch draws the long side uniformly; every training image is also
unlabelled (UniMatch leaves the labelled ones out); Cityscapes is prepared at half resolution
(1024x512), so its crops are 512x512 where UniMatch's are 769x769 at full resolution, and the
labelled loss is plain cross-entropy where UniMatch's is OHEM.

UniMatch V2's recipes follow its code (configs/, unimatch_v2.py, model/semseg/dpt.py): the network
settings of flags/networks/dinov2_small.flags or dinov2_base.flags (AdamW, decoder at 2e-4, encoder at
1/40 of it, poly decay), an EMA teacher whose decay warms up to 0.996, two strong views with
complementary dropout, pseudo-labels at 0.95; Pascal at crop 518, a global batch of 16 (its 4 GPUs
at 4) for 60 epochs; Cityscapes with OHEM (0.7) for 180 epochs at a global batch of 8. What differs:
Cityscapes is prepared at half resolution, so its crops are 504x504 (a multiple of 14 near the
DeepLab recipes' 512) where UniMatch V2's are 798x798 at full resolution, OHEM keeps at least the
same share of the batch's pixels (its 200,000 of two 798x798 crops), and the validation images are
scored whole where UniMatch V2 slides a 798 window over the full-resolution ones; the complementary
dropout keeps each image's two views whole with probability 0.5 where the original keeps exactly
half of a GPU's batch; every training image is also unlabelled.
"""
import argparse
import math
import os
import sys

from semiseg_tf.paper import memory_estimates
from semiseg_tf.paper import recipes  # its `sync` writes or checks the folder

OUT = os.path.join("flags", "beyond")

# UniMatch's strong view and loss, shared by both methods (their `SemiDataset` and training loop).
WEAK_TO_STRONG = [
    "--model=pi", "--aug_strong_colour", "--aug_colour_brightness=0.5", "--aug_colour_contrast=0.5",
    "--aug_colour_saturation=0.5", "--aug_colour_hue=0.25", "--aug_colour_prob=0.8",
    "--aug_colour_greyscale_prob=0.2", "--aug_strong_blur=0.5", "--cons_loss_fn=hard_ce",
    "--conf_per_pixel", "--pseudo_label_thresh=0.95", "--cons_average=valid", "--sup_weight=0.5",
    "--cons_weight=0.5",
]
METHODS = {
    "baseline": ("supervised baseline", ["--cons_weight=0"]),
    "fixmatch": ("FixMatch (UniMatch's re-implementation)", ["--perturbation=fixmatch"] + WEAK_TO_STRONG),
    "unimatch": ("UniMatch", ["--perturbation=unimatch"] + WEAK_TO_STRONG),
    # The same strong views and loss, with an EMA teacher (unimatch_v2.py's model_ema).
    "unimatch_v2": ("UniMatch V2", ["--perturbation=unimatch_v2", "--model=mean_teacher",
                                    "--teacher_alpha=0.996", "--teacher_alpha_warmup"]
                    + WEAK_TO_STRONG[1:]),
}
NETWORK = ["--flagfile=flags/networks/deeplab3plus_resnet101.flags", "--nofreeze_bn",
           "--opt_type=sgd", "--sgd_momentum=0.9", "--sgd_weight_decay=1e-4", "--lr_sched=poly",
           "--lr_poly_power=0.9"]
LOOP = ["--eval_every=5000", "--checkpoint_every=1000", "--log_every=100", "--image_every=2000"]


def steps(epochs, unlabelled, gpus, per_gpu):
    """UniMatch's iterations: epochs x batches of its unlabelled loader (a DistributedSampler pads
    to a multiple of the GPUs; the last incomplete batch is dropped)."""
    return epochs * (math.ceil(unlabelled / gpus) // per_gpu)


# What differs from UniMatch's and UniMatch V2's runs (the module's docstring says why), per table.
DEEPLAB_DIFFERS = ("this project's DeepLab v3+ is the paper's, at output stride 8 with ASPP dilations "
                   "12/24/36 (UniMatch's: 16, with 6/12/18); the scale is drawn log-uniformly from "
                   "[1/2, 2] (UniMatch draws the long side uniformly)")
UNLABELLED_TOO = ("every training image is also unlabelled (UniMatch leaves the labelled ones out)")
HALF_RESOLUTION = "Cityscapes is prepared at half resolution (1024x512)"
V2_DROPOUT = ("the complementary dropout keeps each image's two views whole with probability 0.5 "
              "(the original keeps exactly half of a GPU's batch)")

# UniMatch's Pascal settings (configs/pascal.yaml: 4 GPUs at 2 images, lr 0.001 x 10 for the head).
PASCAL = {
    "data": ["--dataset=pascal_aug", "--crop_size=321,321", "--aug_max_scale=2", "--aug_hflip",
             "--batch_size=8", "--learning_rate=0.01", "--backbone_lr_scale=0.1"],
    "total": 10582, "epochs": 80, "gpus": 4, "per_gpu": 2, "dataset": "Pascal VOC 2012",
    "differs": (DEEPLAB_DIFFERS, UNLABELLED_TOO),
}
PASCAL_CLASSIC_SPLIT = "--split_file=/path/to/UniMatch/splits/pascal/{n}/labeled.txt"
PASCAL_CLASSIC_SPLIT_NOTE = ("UniMatch's list of the labelled images (its lines name the JPEG and "
                             "the mask; the names are read from them)")
TABLES = {
    "pascal_classic_deeplab3plus": {
        "title": "Pascal VOC 2012, labelled images from the classic 1,464 (UniMatch's splits), "
                 "DeepLab v3+ ResNet-101, crop 321",
        **PASCAL,
        "sizes": (92, 183, 366, 732, 1464),
        "split": PASCAL_CLASSIC_SPLIT, "split_note": PASCAL_CLASSIC_SPLIT_NOTE,
        "data_dir": "/path/to/VOC2012",
        # UniMatch's README (ResNet-101, 321); FixMatch: UniMatch paper Table 1.
        "results": {
            "baseline": ((45.1, 55.3, 64.8, 69.7, 73.5), "UniMatch's README, SupBaseline"),
            # Not in UniMatch's README: the paper's table as this project has it, without a stored
            # copy of the paper to check it against.
            "fixmatch": ((63.9, 73.0, 75.5, 77.8, 79.2),
                         "the UniMatch paper (CVPR 2023) Table 1, its FixMatch (check it there)"),
            "unimatch": ((75.2, 77.2, 78.8, 79.9, 81.2), "UniMatch's README"),
        },
    },
    "pascal_aug_deeplab3plus": {
        "title": "Pascal VOC 2012 augmented, the paper's split (French et al.), DeepLab v3+ "
                 "ResNet-101, crop 321",
        **PASCAL,
        "sizes": (106, 212, 529, 1323),
        "split": None, "split_note": None, "data_dir": "/path/to/VOC2012",
        "results": {
            "fixmatch": (None, "none on this split; the paper's CutMix with DeepLab v3+ reached "
                               "59.52, 67.05, 69.57, 72.45"),
            "unimatch": (None, "none on this split; the paper's CutMix with DeepLab v3+ reached "
                               "59.52, 67.05, 69.57, 72.45"),
        },
    },
    "cityscapes_deeplab3plus": {
        "title": "Cityscapes (prepared at half resolution), DeepLab v3+ ResNet-101, crop 512",
        "data": ["--dataset=cityscapes", "--crop_size=512,512", "--aug_max_scale=2", "--aug_hflip",
                 "--batch_size=8", "--learning_rate=0.005", "--backbone_lr_scale=1",
                 "--eval_batch_size=4"],
        "total": 2975, "epochs": 240, "gpus": 8, "per_gpu": 1, "dataset": "Cityscapes",
        "differs": (DEEPLAB_DIFFERS, f"{HALF_RESOLUTION}, so its crops are 512x512 where "
                    "UniMatch's are 769x769 at full resolution", "the labelled loss is plain "
                    "cross-entropy (UniMatch's: OHEM)", UNLABELLED_TOO),
        "sizes": (186, 372, 744, 1488),
        "split": None, "split_note": None, "data_dir": "/path/to/cityscapes",
        "results": {
            "unimatch": ((76.6, 77.9, 79.2, 79.5),
                         "UniMatch's README, at full resolution with crop 769 and OHEM: an upper "
                         "reference for this half-resolution recipe"),
            "fixmatch": (None, "none this project could check (the UniMatch paper's Table 3 has "
                               "its FixMatch at full resolution)"),
        },
    },
}


# UniMatch V2's Pascal and Cityscapes settings (configs/pascal.yaml, configs/cityscapes.yaml).
V2_PASCAL = {
    "data": ["--dataset=pascal_aug", "--crop_size=518,518", "--aug_max_scale=2", "--aug_hflip",
             "--batch_size=16"],
    "total": 10582, "epochs": 60, "gpus": 4, "per_gpu": 4, "sizes": (92, 183, 366, 732, 1464),
    "split": PASCAL_CLASSIC_SPLIT, "split_note": PASCAL_CLASSIC_SPLIT_NOTE,
    "data_dir": "/path/to/VOC2012", "source": "UniMatch V2", "dataset": "Pascal VOC 2012",
    "differs": (V2_DROPOUT, UNLABELLED_TOO.replace("UniMatch", "UniMatch V2")),
}
V2_CROP, V2_CITYSCAPES_BATCH = 504, 8
# UniMatch V2's OHEM keeps at least 200,000 of each GPU's two 798x798 crops' pixels; the same share
# of this recipe's batch.
V2_OHEM_MIN_KEPT = round(200000 * V2_CITYSCAPES_BATCH * V2_CROP ** 2 / (2 * 798 ** 2))
V2_CITYSCAPES = {
    "data": ["--dataset=cityscapes", f"--crop_size={V2_CROP},{V2_CROP}", "--aug_max_scale=2",
             "--aug_hflip", f"--batch_size={V2_CITYSCAPES_BATCH}", "--eval_batch_size=4",
             "--ohem_thresh=0.7", f"--ohem_min_kept={V2_OHEM_MIN_KEPT}"],
    "total": 2975, "epochs": 180, "gpus": 4, "per_gpu": 2, "sizes": (186, 372, 744, 1488),
    "split": None, "split_note": None, "data_dir": "/path/to/cityscapes", "source": "UniMatch V2",
    "dataset": "Cityscapes",
    "differs": (f"{HALF_RESOLUTION}, so its crops are {V2_CROP}x{V2_CROP} where UniMatch V2's are "
                "798x798 at full resolution", "OHEM keeps at least the same share of the batch's "
                "pixels (its 200,000 of two 798x798 crops)", "the validation images are scored "
                "whole (UniMatch V2 slides a 798 window over the full-resolution ones)", V2_DROPOUT,
                UNLABELLED_TOO.replace("UniMatch", "UniMatch V2")),
}
V2_LOG = "the best evaluation in UniMatch V2's training log {log}"


def v2_table(title, settings, encoder, published, source, supervised_logs):
    """A UniMatch V2 table: `published` mIoU per size from `source`; the supervised-only figures of
    the same network, read from UniMatch V2's logs, for the header."""
    return {
        "title": f"{title}, DINOv2-{encoder[0].upper()} ({encoder}) with the DPT decoder",
        **settings,
        "network": [f"--flagfile=flags/networks/dinov2_{encoder}.flags"],
        "weights": f"weights/dinov2-{encoder}",
        "results": {"unimatch_v2": (published, source)},
        "supervised": supervised_logs,
    }


TABLES.update({
    "pascal_classic_dinov2_small": v2_table(
        "Pascal VOC 2012, labelled images from the classic 1,464 (UniMatch's splits), crop 518",
        V2_PASCAL, "small", (79.1, 85.6, 85.9, 86.6, 87.9),
        V2_LOG.format(log="training-logs/table01-pascal_unimatch_v2_{n}labels_dinov2_small.log "
                      "(its paper gives 79.0 at 92)"),
        (67.0, 75.6, 81.8, 83.7, 85.6)),
    "pascal_classic_dinov2_base": v2_table(
        "Pascal VOC 2012, labelled images from the classic 1,464 (UniMatch's splits), crop 518",
        V2_PASCAL, "base", (86.3, 87.9, 88.9, 90.0, 90.8), "UniMatch V2's README",
        (76.9, 82.1, 85.3, 87.2, 88.3)),
    "cityscapes_dinov2_small": v2_table(
        f"Cityscapes (prepared at half resolution), crop {V2_CROP}", V2_CITYSCAPES, "small",
        (80.5, 81.9, 82.4, 82.5),
        V2_LOG.format(log="training-logs/table02-cityscapes_unimatch_v2_1_{k}labels_dinov2_small.log, "
                      "at full resolution with crop 798"),
        (77.2, 80.2, 81.7, 82.4)),
    "cityscapes_dinov2_base": v2_table(
        f"Cityscapes (prepared at half resolution), crop {V2_CROP}", V2_CITYSCAPES, "base",
        (83.6, 84.3, 84.5, 85.1), "UniMatch V2's README, at full resolution with crop 798",
        (80.8, 82.7, 84.0, 84.4)),
})


def cell_file(name, table, method, index, estimates):
    n_sup = table["sizes"][index]
    figures, source = table["results"][method]
    path = f"{OUT}/{name}/{method}_{n_sup}.flags"
    train_steps = steps(table["epochs"], table["total"] - n_sup, table["gpus"], table["per_gpu"])
    # The Cityscapes logs name a size by its fraction (1_16 for 186 of 2,975).
    source = source.format(n=n_sup, k=round(table["total"] / n_sup))
    published = (f"# Published: {figures[index]:.1f} mIoU (%), {source}." if figures
                 else f"# Published: {source}.")
    original = table.get("source", "UniMatch")
    lines = [
        f"# {table['title']}: {METHODS[method][0]}, {n_sup} labelled images.",
        published,
    ]
    if "supervised" in table:
        lines.append(f"# The same network trained on the labelled images alone: "
                     f"{table['supervised'][index]:.1f} (UniMatch V2's training logs).")
    lines += [
        f"# {train_steps} steps: {original}'s {table['epochs']} epochs over the "
        f"{table['total'] - n_sup} unlabelled images at a global batch of "
        f"{table['gpus'] * table['per_gpu']}.",
        *memory_estimates.header_lines(estimates, path, table["gpus"], table["per_gpu"], original,
                                       table["dataset"]),
        *memory_estimates.comment(f"What differs from {original}'s runs: "
                                  f"{'; '.join(table['differs'])}."),
        "# Run (from the repository root):",
        f"#   python -m semiseg_tf.train --flagfile={path} \\",
        f"#       --data_dir={table['data_dir']} "
        f"--backbone_weights={table.get('weights', 'weights/resnet101.h5')} \\",
    ]
    if table["split"]:
        lines.append(f"#       {table['split'].format(n=n_sup)} \\")
    lines += [
        f"#       --workdir=runs/beyond/{name}/{method}_{n_sup}",
    ]
    if table["split"]:
        lines.append(f"# {table['split_note']} (the placeholder fails until it is given):")
        lines.append(table["split"].format(n=n_sup))
    lines += (table.get("network", NETWORK) + table["data"] + LOOP
              + [f"--n_sup={n_sup}", f"--train_steps={train_steps}"])
    return path, "\n".join(lines + METHODS[method][1]) + "\n"


def cells(name):
    """(method, index, cell name) of every cell of table `name`."""
    table = TABLES[name]
    return [(method, index, f"{method}_{n}") for method in table["results"]
            for index, n in enumerate(table["sizes"])]


def recipe_files():
    files, estimates = {}, memory_estimates.load()
    for name, table in TABLES.items():
        for method, index, _ in cells(name):
            path, text = cell_file(name, table, method, index, estimates)
            files[path] = text
    return files


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args()
    return recipes.sync(recipe_files(), [OUT], "python -m semiseg_tf.paper.beyond_recipes",
                        args.check)


if __name__ == "__main__":
    sys.exit(main())
