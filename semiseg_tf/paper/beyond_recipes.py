"""Writes the recipes beyond the paper: FixMatch and UniMatch (Yang et al., CVPR 2023) on Pascal VOC and
Cityscapes with DeepLab v3+ ResNet-101, one flagfile per cell, into flags/beyond/.

  .venv/bin/python -m semiseg_tf.paper.beyond_recipes          # rewrite flags/beyond/
  .venv/bin/python -m semiseg_tf.paper.beyond_recipes --check  # exit 1 if it differs

The hyper-parameters are those of UniMatch's code (configs/pascal.yaml, configs/cityscapes.yaml,
dataset/semi.py, unimatch.py, fixmatch.py): SGD with momentum 0.9 and weight decay 1e-4, the head at
10x the backbone's rate on Pascal (1x on Cityscapes), poly decay, 80 (Pascal) or 240 (Cityscapes)
epochs over the unlabelled images at a global batch of 8 labelled and 8 unlabelled images (their 4
or 8 GPUs), the student as its own target, pseudo-labels at 0.95 confidence, the strong view's
colour jitter, greyscale, blur and CutMix box, and (loss_x + loss_u) / 2. Each file starts with the
published mIoU of its cell (or says there is none) and the command that runs it. A test checks that
the folder holds what this script writes, so edit the tables here, not the files.

What differs from UniMatch's runs, and why (also in each file): this project's DeepLab v3+ is the
paper's (output stride 8, ASPP dilations 12/24/36 where UniMatch's Pascal network has stride 16 and
6/12/18), its batch norm trained as UniMatch's (--nofreeze_bn); the scale augmentation draws log-
uniformly from [1/2, 2] where UniMatch draws the long side uniformly; every training image is also
unlabelled (UniMatch leaves the labelled ones out); Cityscapes is prepared at half resolution
(1024x512), so its crops are 512x512 where UniMatch's are 769x769 at full resolution, and the
labelled loss is plain cross-entropy where UniMatch's is OHEM.
"""
import argparse
import math
import os
import sys

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
}
NETWORK = ["--flagfile=flags/networks/deeplab3plus_resnet101.flags", "--nofreeze_bn",
           "--opt_type=sgd", "--sgd_momentum=0.9", "--sgd_weight_decay=1e-4", "--lr_sched=poly",
           "--lr_poly_power=0.9"]
LOOP = ["--eval_every=5000", "--checkpoint_every=1000", "--log_every=100", "--image_every=2000"]


def steps(epochs, unlabelled, gpus, per_gpu):
    """UniMatch's iterations: epochs x batches of its unlabelled loader (a DistributedSampler pads
    to a multiple of the GPUs; the last incomplete batch is dropped)."""
    return epochs * (math.ceil(unlabelled / gpus) // per_gpu)


# UniMatch's Pascal settings (configs/pascal.yaml: 4 GPUs at 2 images, lr 0.001 x 10 for the head).
PASCAL = {
    "data": ["--dataset=pascal_aug", "--crop_size=321,321", "--aug_max_scale=2", "--aug_hflip",
             "--batch_size=8", "--learning_rate=0.01", "--backbone_lr_scale=0.1"],
    "total": 10582, "epochs": 80, "gpus": 4, "per_gpu": 2,
}
TABLES = {
    "pascal_classic_deeplab3plus": {
        "title": "Pascal VOC 2012, labelled images from the classic 1,464 (UniMatch's splits), "
                 "DeepLab v3+ ResNet-101, crop 321",
        **PASCAL,
        "sizes": (92, 183, 366, 732, 1464),
        "split": "--split_file=/path/to/UniMatch/splits/pascal/{n}/labeled.txt",
        "split_note": "UniMatch's list of the labelled images (its lines name the JPEG and the mask; "
                      "the names are read from them)",
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
        "total": 2975, "epochs": 240, "gpus": 8, "per_gpu": 1,
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


def cell_file(name, table, method, index):
    n_sup = table["sizes"][index]
    figures, source = table["results"][method]
    path = f"{OUT}/{name}/{method}_{n_sup}.flags"
    train_steps = steps(table["epochs"], table["total"] - n_sup, table["gpus"], table["per_gpu"])
    published = (f"# Published: {figures[index]:.1f} mIoU (%), {source}." if figures
                 else f"# Published: {source}.")
    lines = [
        f"# {table['title']}: {METHODS[method][0]}, {n_sup} labelled images.",
        published,
        f"# {train_steps} steps: UniMatch's {table['epochs']} epochs over the {table['total'] - n_sup}"
        f" unlabelled images at a global batch of {table['gpus'] * table['per_gpu']}.",
        "# Run (from the repository root; a GPU is needed, see BENCHMARKS.md):",
        f"#   python -m semiseg_tf.train --flagfile={path} \\",
        f"#       --data_dir={table['data_dir']} --backbone_weights=weights/resnet101.h5 \\",
    ]
    if table["split"]:
        lines.append(f"#       {table['split'].format(n=n_sup)} \\")
    lines += [
        f"#       --workdir=runs/beyond/{name}/{method}_{n_sup}",
        "# What differs from UniMatch's runs: see semiseg_tf/paper/beyond_recipes.py.",
    ]
    if table["split"]:
        lines.append(f"# {table['split_note']} (the placeholder fails until it is given):")
        lines.append(table["split"].format(n=n_sup))
    lines += NETWORK + table["data"] + LOOP + [f"--n_sup={n_sup}", f"--train_steps={train_steps}"]
    return path, "\n".join(lines + METHODS[method][1]) + "\n"


def cells(name):
    """(method, index, cell name) of every cell of table `name`."""
    table = TABLES[name]
    return [(method, index, f"{method}_{n}") for method in table["results"]
            for index, n in enumerate(table["sizes"])]


def recipe_files():
    files = {}
    for name, table in TABLES.items():
        for method, index, _ in cells(name):
            path, text = cell_file(name, table, method, index)
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
