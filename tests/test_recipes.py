"""The paper's recipes (flags/paper/), the example recipes, and smoke runs of each dataset."""
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import dataset_fixtures as fx
from conftest import parse_flags
from semiseg_tf import training
from semiseg_tf.paper import beyond_recipes as beyond
from semiseg_tf.paper import recipes
from semiseg_tf.paper import tables as paper_tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    # Recipes include other flagfiles by paths relative to the repository root.
    monkeypatch.chdir(REPO)


def test_shipped_recipes_are_what_the_generator_writes():
    proc = subprocess.run([sys.executable, "-m", "semiseg_tf.paper.recipes", "--check"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    cells = [p for p in glob.glob("flags/paper/*/*.flags") if not p.endswith("common.flags")]
    # Pascal v2: 6 methods x 5 sizes; v3+, Dense U-net, PSPNet: 2 x 5; Cityscapes 3 x 4; ISIC 6 + 1.
    assert len(cells) == 30 + 3 * 10 + 12 + 7
    as_run = glob.glob("flags/paper_as_run/*/*.flags")
    assert sorted(p.replace("paper_as_run", "paper") for p in as_run) == sorted(cells)


@pytest.mark.parametrize("path, expected", [
    ("flags/paper_as_run/pascal_deeplab2/cutmix_106.flags",
     dict(arch="deeplab2_resnet101", perturbation="cutmix", n_sup=106, deeplab2_aspp_two_branches=True,
          deeplab2_authors_repeated_updates=True, backbone_lr_scale=0.1, vat_authors_probe=False)),
    ("flags/paper_as_run/pascal_deeplab2/vat_529.flags",
     dict(perturbation="vat", n_sup=529, vat_authors_probe=True, vat_authors_eval_mode=True,
          deeplab2_authors_repeated_updates=True)),
    ("flags/paper_as_run/pascal_deeplab3plus/cutmix_212.flags",
     dict(arch="deeplab3plus_resnet101", backbone_lr_scale=1.0, n_sup=212,
          deeplab2_authors_repeated_updates=False)),
    ("flags/paper_as_run/isic2017_dense_unet/vat_50.flags",
     dict(arch="dense_unet_densenet161", backbone_lr_scale=0.1, vat_authors_probe=True,
          sgd_nesterov=True)),
    ("flags/paper_as_run/pascal_pspnet/cutmix_106.flags",
     dict(arch="pspnet_resnet101", backbone_lr_scale=0.1, deeplab2_authors_repeated_updates=False)),
])
def test_as_run_recipes_add_the_authors_behaviours_to_the_papers_cells(tmp_path, path, expected):
    """flags/paper_as_run/: the paper's cell, and on top what the authors' code did besides."""
    cfg, _ = parse_flags(flagfile=path, data_dir=str(tmp_path), workdir=str(tmp_path / "run"))
    values = cfg.by_flag()
    assert {name: values[name] for name in expected} == expected
    paper, _ = parse_flags(flagfile=path.replace("paper_as_run", "paper"), data_dir=str(tmp_path),
                           workdir=str(tmp_path / "run"))
    changed = {name for name, value in values.items() if value != paper.by_flag()[name]}
    assert changed <= {"deeplab2_aspp_two_branches", "deeplab2_authors_repeated_updates",
                       "backbone_lr_scale", "vat_authors_probe", "vat_authors_eval_mode"}, changed


@pytest.mark.parametrize("path, expected", [
    ("flags/paper/pascal_deeplab2/cutmix_106.flags",
     dict(dataset="pascal_aug", arch="deeplab2_resnet101", n_sup=106, learning_rate=3e-5,
          opt_type="adam", crop_size=(321, 321), batch_size=10, train_steps=40000,
          aug_scale_hung=True, aug_hflip=True, aug_strong_colour=False, perturbation="cutmix",
          mask_prop_range=(0.5, 0.5), cons_weight=1.0, conf_thresh=0.97, freeze_bn=True)),
    ("flags/paper/pascal_deeplab2/augment_1323.flags",
     dict(perturbation="augment", cons_weight=0.003, n_sup=1323)),
    ("flags/paper/pascal_deeplab2/ict_all.flags", dict(perturbation="ict", cons_weight=0.01, n_sup=-1)),
    ("flags/paper/pascal_deeplab2/vat_212.flags",
     dict(perturbation="vat", cons_weight=0.1, adaptive_vat_radius=True, vat_radius=1.0,
          cons_loss_fn="kld")),
    ("flags/paper/pascal_deeplab2/cutout_529.flags",
     dict(perturbation="cutout", mask_prop_range=(0.0, 1.0), cons_weight=1.0)),
    ("flags/paper/pascal_deeplab3plus/baseline_106.flags",
     dict(arch="deeplab3plus_resnet101", learning_rate=1e-5, cons_weight=0.0)),
    ("flags/paper/pascal_pspnet/cutmix_212.flags", dict(arch="pspnet_resnet101", learning_rate=1e-4)),
    ("flags/paper/pascal_dense_unet/cutmix_all.flags",
     dict(arch="dense_unet_densenet161", learning_rate=3e-4, n_sup=-1)),
    ("flags/paper/cityscapes_deeplab2/cutmix_372.flags",
     dict(dataset="cityscapes", crop_size=(256, 512), batch_size=4, aug_hflip=True,
          aug_scale_hung=False, learning_rate=3e-5, n_sup=372, boxmask_n_boxes=1)),
    ("flags/paper/isic2017_dense_unet/augment_50.flags",
     dict(dataset="isic2017", arch="dense_unet_densenet161", opt_type="sgd", learning_rate=0.05,
          sgd_nesterov=True, sgd_weight_decay=5e-4, lr_sched="poly", crop_size=(224, 224),
          aug_vflip=True, aug_hvflip=True, aug_rot_mag=45.0, aug_max_scale=1.1, bin_fill_holes=True,
          freeze_bn=False, cons_weight=0.1, aug_free_scale_rot=True, n_sup=50)),
    ("flags/paper/isic2017_dense_unet/ict_50.flags", dict(perturbation="ict", cons_weight=0.0003)),
    ("flags/paper/isic2017_dense_unet/baseline_all.flags", dict(cons_weight=0.0, n_sup=-1)),
])
def test_recipes_hold_the_papers_hyper_parameters(tmp_path, path, expected):
    cfg, _ = parse_flags(flagfile=path, data_dir=str(tmp_path), workdir=str(tmp_path / "run"))
    values = cfg.by_flag()
    assert {name: values[name] for name in expected} == expected


@pytest.mark.parametrize("family", ["paper", "paper_as_run"])
def test_every_recipe_parses_and_heads_with_the_papers_figure(tmp_path, family):
    for name, table in recipes.TABLES.items():
        for method, index, cell in paper_tables.cells(name):
            path = f"flags/{family}/{name}/{cell}.flags"
            text = open(path).read()
            figure = float(re.search(r"^# Paper: ([0-9.]+) mIoU", text, re.M).group(1))
            assert figure == table["results"][method][index], path
            assert f"python -m semiseg_tf.train --flagfile={path}" in text
            cfg, _ = parse_flags(flagfile=path, data_dir=str(tmp_path), workdir=str(tmp_path / "r"))
            assert cfg.labelled.n_sup == table["sizes"][index] and cfg.network.arch == table["network"]


def test_beyond_recipes_are_what_their_generator_writes_and_parse(tmp_path):
    """flags/beyond/: FixMatch and UniMatch (and the classic-split baseline), each headed by its
    published figure, with UniMatch's weak-to-strong settings and step counts."""
    proc = subprocess.run([sys.executable, "-m", "semiseg_tf.paper.beyond_recipes", "--check"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    split = tmp_path / "labeled.txt"
    split.write_text("")
    count = 0
    for name, table in beyond.TABLES.items():
        for method, index, cell in beyond.cells(name):
            path = f"flags/beyond/{name}/{cell}.flags"
            text = open(path).read()
            figures = table["results"][method][0]
            published = re.search(r"^# Published: ([0-9.]+) mIoU", text, re.M)
            assert (float(published.group(1)) if published else None) == (
                figures[index] if figures else None), path
            assert f"python -m semiseg_tf.train --flagfile={path}" in text
            overrides = {"split_file": str(split)} if table["split"] else {}
            cfg, _ = parse_flags(flagfile=path, data_dir=str(tmp_path), workdir=str(tmp_path / "r"),
                                 **overrides)
            assert cfg.labelled.n_sup == table["sizes"][index]
            if method == "unimatch_v2":
                count += check_unimatch_v2_recipe(name, cfg)
                continue
            assert cfg.network.arch == "deeplab3plus_resnet101" and not cfg.network.freeze_bn
            assert cfg.optimiser.opt_type == "sgd" and cfg.training.batch_size == 8
            if method != "baseline":
                m = cfg.method
                assert (m.perturbation, m.model, m.cons_loss_fn, m.conf_thresh, m.conf_per_pixel,
                        m.cons_average, m.sup_weight, m.cons_weight) == (
                    method, "pi", "hard_ce", 0.95, True, "valid", 0.5, 0.5)
                assert cfg.strong_augmentation.colour and cfg.strong_augmentation.blur_prob == 0.5
            count += 1
    assert count == 15 + 8 + 8 + 2 * (5 + 4)
    # UniMatch's Pascal 92: 80 epochs of the loader over 10,490 images on 4 GPUs at 2 each.
    cfg, _ = parse_flags(flagfile="flags/beyond/pascal_classic_deeplab3plus/unimatch_92.flags",
                         data_dir=str(tmp_path), workdir=str(tmp_path / "r"), split_file=str(split))
    assert cfg.training.steps == 80 * 1311
    assert cfg.optimiser.learning_rate == 0.01 and cfg.optimiser.backbone_lr_scale == 0.1


def check_unimatch_v2_recipe(name, cfg):
    """UniMatch V2's settings (its configs and unimatch_v2.py) in one of its recipes; returns 1."""
    encoder = "small" if "small" in name else "base"
    assert cfg.network.arch == f"dinov2_{encoder}"
    o = cfg.optimiser
    assert (o.opt_type, o.adamw_weight_decay, o.learning_rate, o.backbone_lr_scale, o.lr_sched) == (
        "adamw", 0.01, 2e-4, 0.025, "poly")
    assert o.learning_rate * o.backbone_lr_scale == pytest.approx(5e-6)
    m = cfg.method
    assert (m.perturbation, m.model, m.teacher_alpha, m.teacher_alpha_warmup, m.cons_loss_fn,
            m.conf_thresh, m.conf_per_pixel, m.cons_average, m.sup_weight, m.cons_weight) == (
        "unimatch_v2", "mean_teacher", 0.996, True, "hard_ce", 0.95, True, "valid", 0.5, 0.5)
    assert cfg.unimatch.complementary and cfg.unimatch.kept_share == 0.5
    unlabelled = (10582 if name.startswith("pascal") else 2975) - cfg.labelled.n_sup
    if name.startswith("pascal"):
        # 60 epochs of a loader over the unlabelled images, on 4 GPUs at 4 each.
        assert cfg.augmentation.crop_size == (518, 518) and cfg.training.batch_size == 16
        assert cfg.training.steps == 60 * (-(-unlabelled // 4) // 4)
        assert cfg.supervised.ohem_thresh == 1.0
    else:
        # 180 epochs on 4 GPUs at 2 each; OHEM keeping 200,000 of two 798x798 crops' share.
        assert cfg.augmentation.crop_size == (504, 504) and cfg.training.batch_size == 8
        assert cfg.training.steps == 180 * (-(-unlabelled // 4) // 2)
        assert cfg.supervised.ohem_thresh == 0.7
        assert cfg.supervised.ohem_min_kept / (8 * 504 ** 2) == pytest.approx(
            200000 / (2 * 798 ** 2), rel=1e-5)
    return 1


def test_every_real_data_recipe_header_names_its_gpu_needs_its_run_status_and_differences():
    """Each cell of flags/paper, flags/paper_as_run and flags/beyond says how many GPUs it needs
    and with how much memory (an estimate, said so), that it has not been run with this code,
    and (the first two families apart from paper_as_run, which is defined by them) what differs
    from the original runs."""
    cells = [path for family in ("paper", "paper_as_run", "beyond")
             for path in glob.glob(f"flags/{family}/*/*_*.flags")]
    assert len(cells) > 150
    for path in cells:
        with open(path) as f:
            header = " ".join(line[2:] for line in f.read().splitlines() if line.startswith("# "))
        assert re.search(r"GPUs?: (one|\d+), as .* ran it, (each )?with about \d+ GiB for its \d+ "
                         r"images?.*; estimated from the training step's peak memory on a CPU .*, "
                         "not measured on a GPU", header), path
        assert "Not run yet with this code on " in header, path
        if "paper_as_run" not in path:
            assert "What differs from " in header, path


def test_a_recipe_memory_estimate_extrapolates_its_two_measurements():
    from semiseg_tf.paper import memory_estimates
    estimates = {"families": {"flags/paper/t/cutmix": {"1": 3.0, "2": 4.2}}}
    assert memory_estimates.gib(estimates, "flags/paper/t/cutmix_106.flags", 10) == pytest.approx(
        3.0 + 9 * 1.2)
    assert memory_estimates.gib(estimates, "flags/paper/t/cutout_106.flags", 10) is None
    lines = memory_estimates.header_lines(estimates, "flags/paper/t/cutmix_all.flags", 4, 2,
                                          "UniMatch", "Cityscapes")
    assert " ".join(line[2:] for line in lines).startswith(
        "GPUs: 4, as UniMatch ran it, each with about 4 GiB for its 2 images (or one with about "
        "11 GiB for the whole batch)")


def test_demo_recipes_parse_and_weak_to_strong_ones_set_their_pieces(tmp_path):
    parsed = {}
    for path in sorted(glob.glob("flags/demo/*.flags")):
        name = os.path.basename(path)[:-len(".flags")]
        parsed[name], _ = parse_flags(flagfile=path, workdir=str(tmp_path / name))
    assert {"baseline", "cutmix", "cutout", "augment", "ict", "vat", "fixmatch", "unimatch",
            "unimatch_v2", "dinov2_baseline", "dinov2_cutmix", "dinov2_unimatch_v2"} <= set(parsed)
    for name in ("baseline", "cutmix", "unimatch_v2"):
        # The DINOv2 rows are their U-net recipe with the network swapped, nothing else.
        dinov2 = parsed[f"dinov2_{name}"].by_flag()
        changed = {flag for flag, value in dinov2.items()
                   if value != parsed[name].by_flag()[flag] and flag != "workdir"}
        assert changed == {"arch", "crop_size", "opt_type", "backbone_lr_scale"}, (name, changed)
        assert dinov2["arch"] == "dinov2_tiny"
    v2 = parsed["unimatch_v2"].method
    assert (v2.perturbation, v2.model, v2.teacher_alpha, v2.teacher_alpha_warmup) == (
        "unimatch_v2", "mean_teacher", 0.996, True)
    for name in ("fixmatch", "unimatch"):
        cfg = parsed[name]
        method = cfg.method
        assert (method.perturbation, method.model, method.cons_loss_fn, method.conf_thresh,
                method.conf_per_pixel, method.cons_average, method.sup_weight, method.cons_weight,
                cfg.strong_augmentation.blur_prob) == (
            name, "pi", "hard_ce", 0.95, True, "valid", 0.5, 0.5, 0.5)
        # The same network, data, steps and labels as the paper's methods' demo recipes.
        for flag in ("arch", "n_sup", "train_steps", "batch_size", "crop_size", "learning_rate"):
            assert cfg.by_flag()[flag] == parsed["cutmix"].by_flag()[flag], flag


@pytest.mark.parametrize("name, reference_crop", [
    ("fixmatch", 321), ("unimatch", 321), ("unimatch_v2", 518), ("dinov2_unimatch_v2", 518)])
def test_demo_weak_to_strong_recipes_keep_colour_and_their_published_twins_do_not(
        tmp_path, name, reference_crop):
    """flags/demo/NAME.flags is flags/demo/as_published/NAME.flags with the strong view adapted
    to the embedded dataset, nothing else: no hue jitter, no greyscale, the blur sized to the crop."""
    adapted, _ = parse_flags(flagfile=f"flags/demo/{name}.flags", workdir=str(tmp_path / "a"))
    published, _ = parse_flags(flagfile=f"flags/demo/as_published/{name}.flags",
                               workdir=str(tmp_path / "p"))
    changed = {flag: value for flag, value in adapted.by_flag().items()
               if value != published.by_flag()[flag] and flag != "workdir"}
    assert changed == {"aug_colour_hue": 0.0, "aug_colour_greyscale_prob": 0.0,
                       "aug_blur_reference_crop": reference_crop}
    view = published.strong_augmentation
    assert (view.colour, view.brightness, view.contrast, view.saturation, view.hue,
            view.colour_prob, view.greyscale_prob, view.blur_prob, view.blur_sigma,
            view.blur_reference_crop) == (True, 0.5, 0.5, 0.5, 0.25, 0.8, 0.2, 0.5, (0.1, 2.0), 0)


def test_paper_tables_runs_every_cell_per_seed_and_collects_mean_and_std(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "semiseg_tf.paper.tables", "cityscapes_deeplab2", "--dry_run",
         f"--runs={tmp_path}", "--data_dir=/data/cs"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    commands = proc.stdout.strip().splitlines()
    assert len(commands) == 12 * 5
    assert commands[0].endswith(
        "-m semiseg_tf.train --flagfile=flags/paper/cityscapes_deeplab2/baseline_100.flags "
        f"--split_seed=12345 --workdir={tmp_path}/cityscapes_deeplab2/baseline_100_12345 "
        "--data_dir=/data/cs")
    for seed, miou in ((12345, 0.50), (23456, 0.54)):
        run = tmp_path / "cityscapes_deeplab2" / f"cutmix_100_{seed}"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"miou": miou}))
    table = paper_tables.results_table("cityscapes_deeplab2", [12345, 23456], str(tmp_path))
    # mean 52.00, sample standard deviation sqrt(2 * 2^2 / 1) = 2.83
    assert "| CutMix | 52.00 ± 2.83 (2 runs) / 51.20 | not run / 60.34 |" in table
    assert "| supervised baseline | not run / 44.41 |" in table
    as_run = subprocess.run(
        [sys.executable, "-m", "semiseg_tf.paper.tables", "pascal_deeplab2", "--family=paper_as_run",
         "--dry_run", "--cells", "vat_106", "--seeds", "2"], cwd=REPO, capture_output=True, text=True)
    assert as_run.returncode == 0, as_run.stderr
    assert as_run.stdout.strip().endswith(
        "--flagfile=flags/paper_as_run/pascal_deeplab2/vat_106.flags --seed=2 "
        "--workdir=runs/paper_as_run/pascal_deeplab2/vat_106_2")


# --- smoke runs: each dataset's recipe, a few steps on its fixture, through train and evaluate -----------

def run_recipe(tmp_path, recipe, data_dir, **overrides):
    values = {"flagfile": recipe, "data_dir": str(data_dir), "workdir": str(tmp_path / "run"),
              "prepared_dir": str(tmp_path / "prepared"), "arch": "tiny_unet", "batch_size": 2,
              "train_steps": 2, "eval_every": 2, "checkpoint_every": 2, "log_every": 1,
              "image_every": 2, "eval_batch_size": 2, "freeze_bn": "false", **overrides}
    cfg, text = parse_flags(**values)
    with open(tmp_path / "log.txt", "w") as out:
        result = training.Trainer(cfg, text, out=out).run()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["step"] == 2 and 0 <= metrics["miou"] <= 1
    assert result.miou == metrics["miou"]
    return cfg, metrics, (tmp_path / "log.txt").read_text()


def test_pascal_recipe_smoke_run(tmp_path, pascal_aug_dir):
    data_dir, prepared_dir = pascal_aug_dir
    cfg, metrics, log = run_recipe(tmp_path, "flags/paper/pascal_deeplab2/cutmix_106.flags", data_dir,
                                   prepared_dir=str(prepared_dir), crop_size="16,16")
    assert len(metrics["per_class_iou"]) == 21 and cfg.labelled.n_sup == 106
    assert "eval @ step 2" in log


def test_cityscapes_recipe_smoke_run(tmp_path):
    fx.write_cityscapes(tmp_path / "cs", zipped=True)
    cfg, metrics, log = run_recipe(tmp_path, "flags/paper/cityscapes_deeplab2/cutout_100.flags",
                                   tmp_path / "cs", crop_size="16,32", n_sup=4)
    assert len(metrics["per_class_iou"]) == 19 and "preparing cityscapes" in log


def test_isic_recipe_smoke_run_fills_holes(tmp_path):
    fx.write_isic(tmp_path / "isic", n_train=8, n_val=3, size=(40, 60))
    cfg, metrics, _ = run_recipe(tmp_path, "flags/paper/isic2017_dense_unet/augment_50.flags",
                                 tmp_path / "isic", crop_size="16,16", n_sup=4)
    assert cfg.evaluation.bin_fill_holes and set(metrics["per_class_iou"]) == {"background", "lesion"}


def test_camvid_example_smoke_run_scores_the_test_set(tmp_path):
    fx.write_camvid(tmp_path / "camvid")
    _, metrics, log = run_recipe(tmp_path, "flags/examples/camvid_cutmix.flags", tmp_path / "camvid",
                                 crop_size="16,16", n_sup=3)
    assert 0 <= metrics["test"]["miou"] <= 1 and "test @ step 2" in log


def test_folder_example_smoke_run(tmp_path):
    fx.write_folder(tmp_path / "mine")
    _, metrics, _ = run_recipe(tmp_path, "flags/examples/folder_cutmix.flags", tmp_path / "mine",
                               crop_size="16,16", n_sup=4)
    assert len(metrics["per_class_iou"]) == 3


def test_folder_cpu_example_trains_its_own_network_and_the_gpu_one_warns_without_weights(tmp_path):
    fx.write_folder(tmp_path / "mine", height=48, width=56)
    cfg, metrics, log = run_recipe(tmp_path, "flags/examples/folder_cpu.flags",
                                   tmp_path / "mine", arch="small_unet", crop_size="32,32", n_sup=4)
    assert cfg.network.arch == "small_unet" and len(metrics["per_class_iou"]) == 3
    assert "warning" not in log
    # The GPU recipe's network, built as it comes, without --backbone_weights: the warning.
    from types import SimpleNamespace
    from semiseg_tf import models
    printed = []
    network = SimpleNamespace(backbone_weights=None, arch="deeplab3plus_resnet101")
    trainer = SimpleNamespace(cfg=SimpleNamespace(network=network),
                              model=SimpleNamespace(student=models.build("deeplab3plus_small", 3)),
                              say=printed.append)
    training.Trainer._warn_untrained_backbone(trainer)
    assert printed == ["warning: --arch=deeplab3plus_resnet101 trains from random weights: its "
                       "recipes start from an ImageNet-pretrained backbone (--backbone_weights=FILE,"
                       " docs/methods.md 'Networks'); without one it needs far more labels and steps"]
    trainer.cfg.network.backbone_weights = "weights/resnet101.h5"
    training.Trainer._warn_untrained_backbone(trainer)
    assert len(printed) == 1


def test_cli_reports_bad_data_in_one_line(tmp_path):
    fx.write_camvid(tmp_path / "camvid")
    os.remove(tmp_path / "camvid" / "trainannot" / "0001TP_000002.png")
    proc = subprocess.run(
        [sys.executable, "-m", "semiseg_tf.train", "--flagfile=flags/examples/camvid_cutmix.flags",
         f"--data_dir={tmp_path}/camvid", f"--workdir={tmp_path}/run", "--n_sup=2",
         f"--prepared_dir={tmp_path}/prepared"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path}/camvid/trainannot/0001TP_000002.png: missing (the label of "
        f"{tmp_path}/camvid/train/0001TP_000002.png)")
    assert "Traceback" not in proc.stderr


def test_prepare_command_prepares_and_then_verifies(tmp_path):
    fx.write_isic(tmp_path / "isic", n_train=3, n_val=2, size=(30, 30))
    command = [sys.executable, "-m", "semiseg_tf.prepare", "--dataset=isic2017",
               f"--data_dir={tmp_path}/isic", f"--prepared_dir={tmp_path}/prepared", "--workers=1"]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "preparing isic2017 (5 images)" in first.stderr
    assert "train: 3 images (3 labelled)" in first.stdout and "val: 2 images" in first.stdout
    second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "preparing" not in second.stderr and "train: 3 images" in second.stdout


@pytest.mark.parametrize("recipe, image_size", [
    ("flags/paper/pascal_deeplab2/cutmix_106.flags", (375, 500)),       # Hung scale, 321 crop, flip
    ("flags/paper/cityscapes_deeplab2/cutmix_372.flags", (512, 1024)),  # 256x512 crop, flip
    ("flags/paper/isic2017_dense_unet/cutmix_50.flags", (248, 248)),    # rotate, scale, 3 flips
])
def test_recipe_augmentation_geometry_matches_cv2(tmp_path, recipe, image_size):
    """Each recipe's training warp of an image at its dataset's size equals cv2.warpAffine with the
    drawn matrix: mean-colour (0) padding and 255 labels, or mirrored borders for ISIC."""
    import cv2
    from test_pipeline import CV2_BORDERS
    from semiseg_tf.augment import geometric
    from semiseg_tf.data import pipeline
    cfg, _ = parse_flags(flagfile=recipe, data_dir=str(tmp_path), workdir=str(tmp_path / "run"))
    params = cfg.augmentation.geometric_params()
    assert params.image_border == ("REFLECT_101" if "isic" in recipe else "CONSTANT")
    rng = np.random.RandomState(0)
    image = rng.uniform(-2, 2, image_size + (3,)).astype(np.float32)     # normalised
    label = rng.randint(0, 19, image_size).astype(np.int32)
    padded = 0
    for i in range(4):
        seed = tf.constant([i, 5], tf.int64)
        sample = pipeline.augment(image, label, seed, params)
        matrix = geometric.random_geometric_matrix(seed, *image_size, params)
        affine = matrix.numpy()[:2].astype(np.float64)
        size = (cfg.augmentation.crop_size[1], cfg.augmentation.crop_size[0])
        expected = cv2.warpAffine(image, affine, size, flags=cv2.INTER_LINEAR,
                                  borderMode=CV2_BORDERS[params.image_border], borderValue=0)
        expected_label = cv2.warpAffine(label.astype(np.uint8), affine, size, flags=cv2.INTER_NEAREST,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=255)
        assert np.abs(sample["image"].numpy() - expected).max() < 0.01
        # Nearest neighbour may differ only where the source point lies within OpenCV's fixed-point
        # precision (1/1024 px) of half-way between two pixels.
        differ = np.argwhere(sample["label"].numpy() != expected_label)
        inverse = cv2.invertAffineTransform(affine)
        source = differ[:, ::-1] @ inverse[:, :2].T + inverse[:, 2]
        assert np.all(np.abs(np.abs(source - np.floor(source)) - 0.5).min(axis=1) < 2 / 1024)
        assert len(differ) < 5
        padded += int((sample["label"].numpy() == 255).sum())
    # A 256x512 crop of a 512x1024 image never leaves it; Hung's scale and ISIC's rotations do (labels
    # there are 255, ignored, while ISIC's image borders are mirrored).
    assert (padded == 0) == ("cityscapes" in recipe)
