"""Whole runs on tiny data: resume equals an uninterrupted run, the run folder, flag errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from semiseg_tf import config, training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def weights(trainer):
    return [w.numpy() for w in trainer.model.student.weights + trainer.model.teacher.weights]


def test_stopped_and_resumed_run_equals_uninterrupted(tiny_run, tmp_path):
    cfg, text = tiny_run(workdir=str(tmp_path / "whole"))
    whole = training.Trainer(cfg, text, out=open(os.devnull, "w"))
    whole_result = whole.run()

    cfg, text = tiny_run(workdir=str(tmp_path / "split"), stop_at_step=2)
    paused = training.Trainer(cfg, text, out=open(os.devnull, "w")).run()
    assert paused["step"] == 2 and not os.path.exists(tmp_path / "split" / "metrics.json")
    cfg, text = tiny_run(workdir=str(tmp_path / "split"))
    resumed = training.Trainer(cfg, text, out=open(os.devnull, "w"))
    assert resumed.restore() == 2
    resumed_result = resumed.run()

    for a, b in zip(weights(whole), weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert [e["step"] for e in resumed_result["eval_history"]] == [2, 4]
    np.testing.assert_allclose(resumed_result["miou"], whole_result["miou"], atol=1e-6)


def test_run_folder_contents(tiny_run, tmp_path):
    cfg, text = tiny_run()
    result = training.Trainer(cfg, text, out=open(os.devnull, "w")).run()
    run = tmp_path / "run"
    with open(run / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["miou"] == result["miou"] and set(metrics["per_class_iou"]) == {
        "background", "disk", "square", "triangle", "ring", "cross"}
    assert "--cons_weight=1.0" in (run / "flags.txt").read_text()
    assert os.path.exists(run / "panels" / "latest.png")
    assert any(f.startswith("ckpt-4") for f in os.listdir(run / "checkpoints"))
    for kind in ("train", "eval"):
        assert os.listdir(run / "tensorboard" / kind)
    # Running the finished command again trains nothing and reports the same result.
    again = training.Trainer(cfg, text, out=open(os.devnull, "w")).run()
    assert again["miou"] == result["miou"]


def test_resume_with_other_flags_is_refused(tiny_run):
    cfg, text = tiny_run(stop_at_step=2)
    training.Trainer(cfg, text, out=open(os.devnull, "w")).run()
    cfg, text = tiny_run(cons_weight=0.5)
    with pytest.raises(config.ConfigError, match=r"--workdir=.*other flags.*cons_weight"):
        training.Trainer(cfg, text)


@pytest.mark.parametrize("flag, message", [
    ("--crop_size=64", "--crop_size='64': expected 2 positive comma-separated integers"),
    ("--mask_prop_range=0.7:0.2", "--mask_prop_range='0.7:0.2': expected 0 <= a <= b <= 1"),
    ("--n_sup=5000", "--n_sup=5000: more than the 1000 training images"),
    ("--arch=resnet9000", "--arch=resnet9000: unknown network"),
    ("--lr_sched=stepped", "--lr_step_boundaries=: --lr_sched=stepped needs at least one boundary"),
    ("--batch_size=0", "--batch_size=0: must be positive"),
])
def test_bad_flags_give_one_line_errors(tiny_run, flag, message):
    name, value = flag[2:].split("=", 1)
    with pytest.raises(config.ConfigError) as error:
        tiny_run(**{name: value, "synthetic_num_train": 1000, "n_sup": 20} | (
            {} if name != "n_sup" else {"n_sup": value}))
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_cli_reports_bad_flag_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "semiseg_tf.train", f"--workdir={tmp_path}/x", "--crop_size=a,b"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --crop_size='a,b': expected 2 comma-separated integers")
    assert "Traceback" not in proc.stderr


def test_help_explains_every_flag():
    proc = subprocess.run([sys.executable, "-m", "semiseg_tf.train", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for name in config.Config.__dataclass_fields__:
        assert f"--{name}" in proc.stdout or f"--[no]{name}" in proc.stdout, name
