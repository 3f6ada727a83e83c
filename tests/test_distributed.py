"""MirroredStrategy over two logical CPU devices gives the same training as one device."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("flags", [
    [],                                                            # CutMix
    ["--perturbation=augment", "--aug_strong_colour=true", "--aug_offset_range=4"],
    ["--perturbation=vat", "--adaptive_vat_radius=true", "--cons_loss_fn=kld"],
    # A paper network (frozen batch norm) with its backbone at a tenth of the learning rate.
    ["--arch=deeplab2_small", "--backbone_lr_scale=0.1"],
], ids=["cutmix", "augment_colour", "vat", "deeplab2_lr_groups"])
def test_two_replicas_match_one_device(tmp_path, flags):
    check_two_replicas_match_one_device(tmp_path, flags)


def test_two_replicas_match_one_device_on_prepared_records(tmp_path):
    """The records' reader (a positioned read inside tf.data) under MirroredStrategy."""
    import dataset_fixtures
    dataset_fixtures.write_camvid(tmp_path / "camvid")
    check_two_replicas_match_one_device(tmp_path, [
        "--dataset=camvid", f"--data_dir={tmp_path}/camvid", f"--prepared_dir={tmp_path}/prepared",
        "--n_sup=4"])


def check_two_replicas_match_one_device(tmp_path, flags):
    # A fresh process: logical devices can only be configured before TensorFlow starts.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "mirrored_equivalence.py"),
                           str(tmp_path), *flags], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    # The step really changed the weights (so equality below is not trivial)...
    assert result["moved"] > 1e-3
    # ...and two replicas of half the batch each gave the same student and teacher.
    assert result["diff"]["student"] < 1e-5, result
    assert result["diff"]["teacher"] < 1e-5, result
    assert abs(result["miou"][0] - result["miou"][1]) < 1e-6
