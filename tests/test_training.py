"""Whole runs on tiny data: resume equals an uninterrupted run, the run folder, flag errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import parse_flags
from semiseg_tf import config, models, training
from semiseg_tf.models import weights as weights_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tensorboard_tags(folder):
    tags = set()
    for name in [n for n in os.listdir(folder) if n.startswith("events.")]:
        for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
            tags.update(value.tag for value in event.summary.value)
    return tags


def weights(trainer):
    return [w.numpy() for w in trainer.model.student.weights + trainer.model.teacher.weights]


# tiny_unet: CutMix, with picture panels (drawing them must not disturb the training streams);
# pspnet_small: a SpatialDropout2D, whose random state must come back with the checkpoint
# (supervised, to keep the test short: the dropout draws are the same code in every pass).
@pytest.mark.parametrize("arch, extra", [
    ("tiny_unet", {"image_every": 2}), ("pspnet_small", {"cons_weight": 0})])
def test_stopped_and_resumed_run_equals_uninterrupted(tiny_run, tmp_path, arch, extra):
    cfg, text = tiny_run(workdir=str(tmp_path / "whole"), arch=arch, **extra)
    whole = training.Trainer(cfg, text, out=open(os.devnull, "w"))
    whole_result = whole.run()

    cfg, text = tiny_run(workdir=str(tmp_path / "split"), stop_at_step=2, arch=arch, **extra)
    paused = training.Trainer(cfg, text, out=open(os.devnull, "w")).run()
    assert paused.step == 2 and not paused.finished
    assert not os.path.exists(tmp_path / "split" / "metrics.json")
    # A save killed half-way leaves files the checkpoint state does not name: they must be ignored.
    for junk in ("ckpt-3.index", "ckpt-3.data-00000-of-00001"):
        (tmp_path / "split" / "checkpoints" / junk).write_bytes(b"half-written")
    cfg, text = tiny_run(workdir=str(tmp_path / "split"), arch=arch, **extra)
    resumed = training.Trainer(cfg, text, out=open(os.devnull, "w"))
    assert resumed.restore() == 2
    resumed_result = resumed.run()

    for a, b in zip(weights(whole), weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert [e["step"] for e in resumed_result.eval_history] == [2, 4]
    np.testing.assert_allclose(resumed_result.miou, whole_result.miou, atol=1e-6)


def test_run_folder_contents(tiny_run, tmp_path):
    cfg, text = tiny_run(image_every=2)
    result = training.Trainer(cfg, text, out=open(os.devnull, "w")).run()
    run = tmp_path / "run"
    with open(run / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["miou"] == result.miou and set(metrics["per_class_iou"]) == {
        "background", "disk", "square", "triangle", "ring", "cross"}
    assert "--cons_weight=1.0" in (run / "flags.txt").read_text()
    assert os.path.exists(run / "panels" / "latest.png")
    assert any(f.startswith("ckpt-4") for f in os.listdir(run / "checkpoints"))
    assert tensorboard_tags(run / "tensorboard" / "train") >= {
        "sup_loss", "cons_loss", "conf_share", "learning_rate", "steps_per_second",
        "consistency/image_a", "consistency/image_b", "consistency/mix_mask",
        "consistency/mixed_input", "consistency/teacher_target", "consistency/student_prediction"}
    assert tensorboard_tags(run / "tensorboard" / "eval") >= {
        "miou", "pixel_accuracy", "iou/background", "iou/cross", "confusion_matrix",
        "validation/image_truth_prediction"}
    assert "flags" in tensorboard_tags(run / "tensorboard" / "train")
    # The hparams plugin's session record, at the run's TensorBoard root.
    assert any(tag.startswith("_hparams_/") for tag in tensorboard_tags(run / "tensorboard"))
    for name in ("latest.png", "validation.png", "confusion.png"):
        assert os.path.exists(run / "panels" / name)
    assert metrics["pixel_accuracy"] > 0 and len(metrics["confusion"]) == 6
    # Running the finished command again trains nothing and reports the same result.
    again = training.Trainer(cfg, text, out=open(os.devnull, "w")).run()
    assert again.miou == result.miou


def test_resume_with_other_flags_is_refused(tiny_run):
    cfg, text = tiny_run(stop_at_step=2)
    training.Trainer(cfg, text, out=open(os.devnull, "w")).run()
    cfg, text = tiny_run(cons_weight=0.5)
    with pytest.raises(config.ConfigError, match=r"--workdir=.*other flags.*cons_weight"):
        training.Trainer(cfg, text)


def test_checkpoint_of_other_objects_is_refused_in_one_line(tiny_run):
    cfg, text = tiny_run(stop_at_step=2)
    training.Trainer(cfg, text, out=open(os.devnull, "w")).run()
    # The latest checkpoint of the folder now holds something else (another program's state).
    other = tf.train.Checkpoint(weights=tf.Variable(tf.zeros([3])))
    tf.train.CheckpointManager(other, os.path.join(cfg.run.workdir, "checkpoints"), 5).save(3)
    with pytest.raises(config.ConfigError, match=r"^--workdir=.*ckpt-3: does not hold this run's "
                                                 r"objects \(.*\); resume it with the code"):
        training.Trainer(cfg, text, out=open(os.devnull, "w")).restore()


def test_run_folder_from_before_a_new_flag_resumes_if_the_flag_is_at_its_default(tiny_run):
    cfg, text = tiny_run(stop_at_step=2)
    training.Trainer(cfg, text, out=open(os.devnull, "w")).run()
    path = os.path.join(cfg.run.workdir, training.FLAGS_FILE)
    with open(path) as f:
        older = [line for line in f.read().splitlines() if not line.startswith("--ict_alpha=")]
    with open(path, "w") as f:
        f.write("\n".join(older) + "\n")
    cfg, text = tiny_run()
    training.Trainer(cfg, text, out=open(os.devnull, "w"))     # --ict_alpha at its default: accepted
    cfg, text = tiny_run(ict_alpha=0.5)
    with pytest.raises(config.ConfigError, match=r"other flags \(--ict_alpha=0.1 -> --ict_alpha=0.5"):
        training.Trainer(cfg, text)


def test_cli_reports_bad_flag_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "semiseg_tf.train", f"--workdir={tmp_path}/x", "--crop_size=a,b"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --crop_size='a,b': expected 2 comma-separated integers")
    assert "Traceback" not in proc.stderr


def _backbone_weight_file(path, arch, seed):
    """A weight file holding the backbone of a freshly built `arch` with random weights."""
    tf.keras.utils.set_random_seed(seed)
    backbone = models.backbone_of(models.build(arch, 6))
    stored = {layer.name: {w.path.split("/")[-1]: w.numpy() for w in layer.weights}
              for layer in backbone.layers if layer.weights}
    weights_lib.write_weight_file(str(path), stored)
    return stored


def test_backbone_weights_reach_student_and_teacher_and_train_slower(tiny_run, tmp_path):
    stored = _backbone_weight_file(tmp_path / "backbone.h5", "deeplab2_small", seed=7)
    cfg, text = tiny_run(arch="deeplab2_small", backbone_weights=str(tmp_path / "backbone.h5"),
                         backbone_lr_scale=0.25)
    trainer = training.Trainer(cfg, text, out=open(os.devnull, "w"))
    for network in (trainer.model.student, trainer.model.teacher):
        layer = models.backbone_of(network).get_layer("layer3_0_conv2")
        np.testing.assert_array_equal(layer.kernel.numpy(), stored["layer3_0_conv2"]["kernel"])
    optimizer = trainer.model.optimizer
    backbone_vars = models.backbone_of(trainer.model.student).trainable_variables
    assert backbone_vars and all(optimizer.learning_rate_factor(v) == 0.25 for v in backbone_vars)
    head = trainer.model.student.get_layer("aspp_conv_d6").kernel
    assert optimizer.learning_rate_factor(head) == 1.0
    assert trainer.run().step == cfg.training.steps


def test_cli_reports_a_mismatched_weights_file_in_one_line(tmp_path):
    _backbone_weight_file(tmp_path / "dense.h5", "dense_unet_small", seed=0)
    proc = subprocess.run(
        [sys.executable, "-m", "semiseg_tf.train", f"--workdir={tmp_path}/x", "--arch=deeplab2_small",
         f"--backbone_weights={tmp_path}/dense.h5", "--synthetic_num_train=20", "--n_sup=4"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --backbone_weights={tmp_path}/dense.h5: no weights for layer 'conv1' of "
        "deeplab2_small's backbone (is it the file for this network?)")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name, learning_rate", [
    ("deeplab2_resnet101", 3e-5), ("deeplab3plus_resnet101", 1e-5), ("pspnet_resnet101", 1e-4),
    ("dense_unet_densenet161", 3e-4)])
def test_network_flagfiles_hold_the_papers_settings(tmp_path, name, learning_rate):
    """Supplement Table 2's learning rates, Adam, backbone at 0.1, and the network the file names."""
    cfg, _ = parse_flags(flagfile=os.path.join(REPO, "flags", "networks", f"{name}.flags"),
                         workdir=str(tmp_path / "run"))
    opt = cfg.optimiser
    assert (cfg.network.arch, opt.learning_rate, opt.opt_type, opt.backbone_lr_scale,
            cfg.network.freeze_bn) == (name, learning_rate, "adam", 0.1, True)


def test_repeated_updates_flag_gives_the_authors_multiplicities_to_the_optimiser(tiny_run):
    """--deeplab2_authors_repeated_updates: backbone weights by their place in the authors' module
    tree, the head once; off by default."""
    flags = dict(arch="deeplab2_small", crop_size="32,32", synthetic_image_size=32)
    for repeated in (False, True):
        cfg, _ = tiny_run(**flags, deeplab2_authors_repeated_updates=str(repeated).lower())
        model = training.build_model(cfg, num_classes=3)
        repeats = {v.path.split("/")[-2]: model.optimizer.update_repeats(v)
                   for v in model.student.trainable_variables if v.path.endswith("kernel")}
        expected = {"conv1": 1, "layer2_0_conv2": 3, "layer4_0_downsample_0": 4, "aspp_conv_d6": 1}
        if not repeated:
            expected = dict.fromkeys(expected, 1)
        assert {name: repeats[name] for name in expected} == expected
