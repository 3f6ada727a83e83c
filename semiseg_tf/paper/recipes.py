"""Writes the paper's recipes, one flagfile per cell of its result tables, in two families:

- flags/paper/: the cells as the supplement states them (D.4), done correctly;
- flags/paper_as_run/: the same cells as the authors' code actually ran them: the paper's cell plus
  the flags that reproduce the authors' code's behaviours (`AS_RUN_NETWORK`, `AS_RUN_METHOD`: DeepLab
  v2's repeated backbone updates and two-branch classifier, DeepLab v3+'s backbone at the full rate,
  VAT's probe and inference mode), so that the paper's numbers can be reproduced as they came about.

  .venv/bin/python -m semiseg_tf.paper.recipes          # rewrite both folders
  .venv/bin/python -m semiseg_tf.paper.recipes --check  # exit 1 if either differs

The recipes use the paper's hyper-parameters (supplement D.4), not the authors' later script changes
(their `run_*.sh`: colour augmentation everywhere, other consistency weights). Each file starts
with the paper's mIoU for its cell and the command that runs it; `semiseg_tf/paper/tables.py` runs a table.
A test checks that the folders hold what this script writes, so edit the tables here, not the files.
"""
import argparse
import os
import sys

from semiseg_tf.paper import memory_estimates

# The checkout these tools work in (they write and read its flags/ and runs/).
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join("flags", "paper")
AS_RUN_OUT = os.path.join("flags", "paper_as_run")
FAMILIES = (OUT, AS_RUN_OUT)

# What the authors' code did that the paper does not say, as flags (docs/paper.md, "the authors'
# behaviour"), by network and by method. Boxes crossing the edge (--boxmask_authors_outside_bounds)
# do not arise: the paper's masks stay inside the crop. Their repeated box masks (DataLoader workers
# sharing NumPy's state) are not reproducible and are left out.
AS_RUN_NETWORK = {
    "deeplab2_resnet101": (
        "the classifier's two branches and the backbone weights updated 1, 3 or 4 times a step",
        ["--deeplab2_aspp_two_branches", "--deeplab2_authors_repeated_updates"]),
    "deeplab3plus_resnet101": ("the backbone at the full learning rate", ["--backbone_lr_scale=1"]),
}
AS_RUN_METHOD = {
    "vat": ("VAT's probe of norm 1e-6 H W / 1000 and its direction network left in inference mode",
            ["--vat_authors_probe", "--vat_authors_eval_mode"]),
}

# Consistency settings per method, flag -> value (None: a boolean flag turned on); the weights are
# supplement D.4.1's (Pascal VOC and Cityscapes).
METHODS = {
    "baseline": ("supervised baseline", {"cons_weight": "0"}),
    "augment": ("standard augmentation consistency",
                {"perturbation": "augment", "aug_offset_range": "16", "cons_weight": "0.003",
                 "conf_thresh": "0.97"}),
    "vat": ("VAT, adaptive radius",
            {"perturbation": "vat", "adaptive_vat_radius": None, "vat_radius": "1.0",
             "cons_loss_fn": "kld", "cons_weight": "0.1", "conf_thresh": "0.97"}),
    "ict": ("ICT", {"perturbation": "ict", "ict_alpha": "0.1", "cons_weight": "0.01",
                    "conf_thresh": "0.97"}),
    "cutout": ("Cutout", {"perturbation": "cutout", "mask_prop_range": "0.0:1.0",
                          "cons_weight": "1.0", "conf_thresh": "0.97"}),
    "cutmix": ("CutMix", {"perturbation": "cutmix", "mask_prop_range": "0.5", "cons_weight": "1.0",
                          "conf_thresh": "0.97"}),
}
# ISIC 2017 (supplement D.4.2): standard augmentation at weight 0.1, the teacher's and the student's
# views rotated and scaled freely with respect to each other (VAT's 0.1 is Pascal's already). ICT's
# ISIC weight is not in the paper; 0.0003 is the authors' script's.
ISIC_METHOD_CHANGES = {
    "augment": {"cons_weight": "0.1", "aug_free_scale_rot": None},
    "ict": {"cons_weight": "0.0003"},
}

PASCAL_DATA = [
    "--dataset=pascal_aug", "--crop_size=321,321", "--aug_scale_hung", "--aug_hflip",
    "--batch_size=10", "--train_steps=40000",
]
CITYSCAPES_DATA = [
    "--dataset=cityscapes", "--crop_size=256,512", "--aug_hflip", "--batch_size=4",
    "--train_steps=40000", "--eval_batch_size=4",
]
ISIC_DATA = [
    "--dataset=isic2017", "--crop_size=224,224", "--aug_hflip", "--aug_vflip", "--aug_hvflip",
    "--aug_max_scale=1.1", "--aug_rot_mag=45", "--bin_fill_holes", "--batch_size=10",
    "--train_steps=40000", "--eval_batch_size=10",
    # SGD with Nesterov momentum at 0.05 (D.4.2); the poly schedule is the authors' scripts' (the
    # paper does not say); their ISIC runs train batch norm.
    "--opt_type=sgd", "--learning_rate=0.05", "--sgd_momentum=0.9", "--sgd_nesterov",
    "--sgd_weight_decay=5e-4", "--lr_sched=poly", "--lr_poly_power=0.9", "--nofreeze_bn",
]
LOOP = ["--eval_every=4000", "--checkpoint_every=1000", "--log_every=100", "--image_every=2000",
        "--teacher_alpha=0.99"]

# The authors' box masks repeated (their DataLoader workers shared NumPy's state); this code draws
# each sample's own.
REPEATED_MASKS = ("cutmix", "cutout")

PASCAL_SIZES = (106, 212, 529, 1323, -1)
CITYSCAPES_SIZES = (100, 372, 744, -1)
# Paper mIoU (%), supplement Table 1 and the authors' tables, in the order of the sizes.
TABLES = {
    "pascal_deeplab2": {
        "title": "Pascal VOC 2012 augmented, DeepLab v2 (ImageNet ResNet-101)",
        "network": "deeplab2_resnet101", "data": PASCAL_DATA, "sizes": PASCAL_SIZES,
        "dataset": "Pascal VOC 2012", "batch": 10,
        "data_dir": "/path/to/VOC2012", "weights": "weights/resnet101.h5",
        "seeds": ("seed", (1, 2, 3, 4, 5), "runs share the shipped split and differ by --seed"),
        "results": {
            "baseline": (33.09, 43.15, 52.05, 60.56, 72.59),
            "augment": (32.40, 42.81, 53.37, 60.66, 72.24),
            "vat": (38.81, 48.55, 58.50, 62.93, 72.18),
            "ict": (35.82, 46.28, 53.17, 59.63, 71.50),
            "cutout": (48.73, 58.26, 64.37, 66.79, 72.03),
            "cutmix": (53.79, 64.81, 66.48, 67.60, 72.54),
        },
    },
    "pascal_deeplab3plus": {
        "title": "Pascal VOC 2012 augmented, DeepLab v3+ (ImageNet ResNet-101)",
        "network": "deeplab3plus_resnet101", "data": PASCAL_DATA, "sizes": PASCAL_SIZES,
        "dataset": "Pascal VOC 2012", "batch": 10,
        "data_dir": "/path/to/VOC2012", "weights": "weights/resnet101.h5",
        "seeds": ("seed", (1, 2, 3, 4, 5), "runs share the shipped split and differ by --seed"),
        "results": {
            "baseline": (37.95, 48.35, 59.19, 66.58, 76.70),
            "cutmix": (59.52, 67.05, 69.57, 72.45, 76.73),
        },
    },
    "pascal_dense_unet": {
        "title": "Pascal VOC 2012 augmented, DenseNet-161 Dense U-net (ImageNet)",
        "network": "dense_unet_densenet161", "data": PASCAL_DATA, "sizes": PASCAL_SIZES,
        "dataset": "Pascal VOC 2012", "batch": 10,
        "data_dir": "/path/to/VOC2012", "weights": "weights/densenet161.h5",
        "seeds": ("seed", (1, 2, 3, 4, 5), "runs share the shipped split and differ by --seed"),
        "results": {
            "baseline": (29.22, 39.92, 50.31, 60.65, 72.30),
            "cutmix": (54.19, 63.81, 66.57, 66.78, 72.02),
        },
    },
    "pascal_pspnet": {
        "title": "Pascal VOC 2012 augmented, PSPNet (ImageNet deep-stem ResNet-101)",
        "network": "pspnet_resnet101", "data": PASCAL_DATA, "sizes": PASCAL_SIZES,
        "dataset": "Pascal VOC 2012", "batch": 10,
        "data_dir": "/path/to/VOC2012", "weights": "weights/resnet101_deepstem.h5",
        "seeds": ("seed", (1, 2, 3, 4, 5), "runs share the shipped split and differ by --seed"),
        "results": {
            "baseline": (36.69, 46.96, 59.02, 66.67, 77.59),
            "cutmix": (67.20, 68.80, 73.33, 74.11, 77.42),
        },
    },
    "cityscapes_deeplab2": {
        "title": "Cityscapes (half resolution), DeepLab v2 (ImageNet ResNet-101)",
        "network": "deeplab2_resnet101", "data": CITYSCAPES_DATA, "sizes": CITYSCAPES_SIZES,
        "dataset": "Cityscapes", "batch": 4,
        "data_dir": "/path/to/cityscapes", "weights": "weights/resnet101.h5",
        "seeds": ("split_seed", (12345, 23456, 34567, 45678, 56789), "the authors' split seeds"),
        "results": {
            "baseline": (44.41, 55.25, 60.57, 67.53),
            "cutout": (47.21, 57.72, 61.96, 67.47),
            "cutmix": (51.20, 60.34, 63.87, 67.68),
        },
    },
    "isic2017_dense_unet": {
        "title": "ISIC 2017 skin lesions, DenseNet-161 Dense U-net (ImageNet)",
        "network": "dense_unet_densenet161", "data": ISIC_DATA, "sizes": (50, -1),
        "dataset": "ISIC 2017", "batch": 10,
        "data_dir": "/path/to/isic2017", "weights": "weights/densenet161.h5",
        "seeds": ("split_seed", (12345, 23456, 78901, 89012, 90123), "the authors' split seeds"),
        # The fully supervised run (all 2000 labels) is the baseline with n_sup=all.
        "results": {
            "baseline": (67.64, 78.61),
            "augment": (71.40, None),
            "vat": (69.09, None),
            "ict": (65.45, None),
            "cutout": (68.76, None),
            "cutmix": (74.57, None),
        },
    },
}


def size_name(n_sup):
    return "all" if n_sup == -1 else str(n_sup)


def method_flags(table, method):
    settings = dict(METHODS[method][1])
    if table.startswith("isic2017"):
        settings.update(ISIC_METHOD_CHANGES.get(method, {}))
    return [f"--{name}" if value is None else f"--{name}={value}" for name, value in settings.items()]


def common_file(name, table):
    lines = [f"# {table['title']}: settings shared by every cell of this table (supplement D.4).",
             "# Included by the cell flagfiles beside it; paths are relative to the repository root.",
             f"--flagfile=flags/networks/{table['network']}.flags"]
    return "\n".join(lines + table["data"] + LOOP) + "\n"


def needs_and_status(name, table, method, n_sup, estimates):
    """The header's lines on the GPU the cell needs, whether it has run, and what differs from
    the authors' runs."""
    cell = f"{method}_{size_name(n_sup)}"
    quirks = [quirk[0] for quirk in (AS_RUN_NETWORK.get(table["network"]), AS_RUN_METHOD.get(method))
              if quirk]
    differs = ([f"their code also did what the paper does not say ({'; '.join(quirks)}), which "
                f"{AS_RUN_OUT}/{name}/{cell}.flags adds"] if quirks else [])
    if method in REPEATED_MASKS:
        differs.append("their box masks repeated between DataLoader workers, where each sample "
                       "draws its own here")
    differs.append("runs are seeded and resume bit-identically")
    return (memory_estimates.header_lines(estimates, f"{OUT}/{name}/{cell}.flags", 1,
                                          table["batch"], "the authors", table["dataset"])
            + memory_estimates.comment(f"What differs from the authors' runs: "
                                       f"{'; '.join(differs)}."))


def cell_file(name, table, method, index, estimates):
    n_sup = table["sizes"][index]
    paper = table["results"][method][index]
    path = f"{OUT}/{name}/{method}_{size_name(n_sup)}.flags"
    seed_flag, seeds, seed_note = table["seeds"]
    labelled = "all labelled images" if n_sup == -1 else f"{n_sup} labelled images"
    lines = [
        f"# {table['title']}: {METHODS[method][0]}, {labelled}.",
        f"# Paper: {paper:.2f} mIoU (%). python -m semiseg_tf.paper.tables repeats it with "
        f"--{seed_flag}={','.join(map(str, seeds))} ({seed_note}).",
        *needs_and_status(name, table, method, n_sup, estimates),
        "# Run (from the repository root):",
        f"#   python -m semiseg_tf.train --flagfile={path} \\",
        f"#       --data_dir={table['data_dir']} --backbone_weights={table['weights']} \\",
        f"#       --{seed_flag}={seeds[0]} --workdir=runs/paper/{name}/{method}_{size_name(n_sup)}_"
        f"{seeds[0]}",
        f"# The whole table: .venv/bin/python -m semiseg_tf.paper.tables {name} --data_dir=... "
        "--backbone_weights=...",
        f"--flagfile={OUT}/{name}/common.flags",
        f"--n_sup={n_sup}",
    ]
    return path, "\n".join(lines + method_flags(name, method)) + "\n"


def as_run_cell_file(name, table, method, index, estimates):
    """The paper's cell (`cell_file`) with the authors' code's behaviours on top."""
    n_sup = table["sizes"][index]
    cell = f"{method}_{size_name(n_sup)}"
    path = f"{AS_RUN_OUT}/{name}/{cell}.flags"
    seed_flag, seeds, seed_note = table["seeds"]
    quirks = [AS_RUN_NETWORK.get(table["network"]), AS_RUN_METHOD.get(method)]
    quirks = [quirk for quirk in quirks if quirk]
    labelled = "all labelled images" if n_sup == -1 else f"{n_sup} labelled images"
    what = ("; ".join(description for description, _ in quirks) if quirks
            else "nothing the paper does not say: this is the paper's cell unchanged")
    lines = [
        f"# {table['title']}: {METHODS[method][0]}, {labelled}, as the authors' code ran it.",
        f"# The paper's cell ({OUT}/{name}/{cell}.flags) with what their code did besides: {what}.",
        f"# Paper: {table['results'][method][index]:.2f} mIoU (%). python -m semiseg_tf.paper.tables "
        f"--family=paper_as_run repeats it with --{seed_flag}={','.join(map(str, seeds))} "
        f"({seed_note}).",
        *memory_estimates.header_lines(estimates, f"{OUT}/{name}/{cell}.flags", 1, table["batch"],
                                       "the authors", table["dataset"]),
        "# Run (from the repository root):",
        f"#   python -m semiseg_tf.train --flagfile={path} \\",
        f"#       --data_dir={table['data_dir']} --backbone_weights={table['weights']} \\",
        f"#       --{seed_flag}={seeds[0]} --workdir=runs/paper_as_run/{name}/{cell}_{seeds[0]}",
        f"--flagfile={OUT}/{name}/{cell}.flags",
    ]
    return path, "\n".join(lines + [flag for _, flags in quirks for flag in flags]) + "\n"


def recipe_files():
    """{relative path: text} of every file under flags/paper/ and flags/paper_as_run/."""
    files, estimates = {}, memory_estimates.load()
    for name, table in TABLES.items():
        files[f"{OUT}/{name}/common.flags"] = common_file(name, table)
        for method, values in table["results"].items():
            for index, value in enumerate(values):
                if value is not None:
                    for make in (cell_file, as_run_cell_file):
                        path, text = make(name, table, method, index, estimates)
                        files[path] = text
    return files


def sync(files, folders, generator, check):
    """Makes `folders` hold exactly `files` ({relative path: text}), or with `check` only lists what
    differs; returns the exit status (1: `check` found a difference)."""
    existing = {os.path.relpath(os.path.join(base, n), REPO) for folder in folders
                for base, _, names in os.walk(os.path.join(REPO, folder)) for n in names}
    stale = sorted(existing - set(files))
    differ = [p for p, text in files.items()
              if not os.path.exists(os.path.join(REPO, p)) or open(os.path.join(REPO, p)).read() != text]
    if check:
        for path in stale + differ:
            print(f"differs from {generator}: {path}")
        return 1 if stale or differ else 0
    for path in stale:
        os.remove(os.path.join(REPO, path))
    for path in differ:
        os.makedirs(os.path.dirname(os.path.join(REPO, path)), exist_ok=True)
        with open(os.path.join(REPO, path), "w") as f:
            f.write(files[path])
    print(f"{len(files)} files under {' and '.join(folders)} ({len(differ)} written, "
          f"{len(stale)} removed)")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args()
    return sync(recipe_files(), FAMILIES, "python -m semiseg_tf.paper.recipes", args.check)


if __name__ == "__main__":
    sys.exit(main())
