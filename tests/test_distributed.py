"""MirroredStrategy over two logical CPU devices gives the same training as one device."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


CONFIGURATIONS = {
    "vat": ["--perturbation=vat", "--adaptive_vat_radius=true", "--cons_loss_fn=kld"],
    # CutMix on a paper network (frozen batch norm) with its backbone at a tenth of the learning
    # rate, updated as many times a step as the authors' optimiser listed each weight; its
    # supervised loss class-weighted with OHEM (the weights' sum and the mining threshold are
    # global, not per replica).
    "deeplab2_cutmix_lr_groups_repeated_updates_class_weights_ohem": [
        "--arch=deeplab2_small", "--backbone_lr_scale=0.1", "--deeplab2_authors_repeated_updates=true",
        "--class_weights=median", "--ohem_thresh=0.05", "--ohem_min_kept=300"],
    # FixMatch with the student as its target (the Pi-model), its strong view (colour, blur) and
    # the valid-pixel average.
    "fixmatch_pi": ["--perturbation=fixmatch", "--model=pi", "--aug_strong_colour=true",
                    "--aug_strong_blur=0.5", "--cons_loss_fn=hard_ce", "--conf_per_pixel=true",
                    "--cons_average=valid", "--sup_weight=0.5", "--cons_weight=0.5"],
    # UniMatch with an EMA teacher: two strong views, the feature stream's channel dropout.
    "unimatch_mean_teacher": ["--perturbation=unimatch", "--aug_strong_colour=true",
                              "--aug_strong_blur=0.5", "--cons_loss_fn=hard_ce",
                              "--conf_per_pixel=true", "--cons_average=valid"],
    # UniMatch V2: complementary dropout drawn per sample, AdamW, the EMA's warm-up. (On the
    # U-net: the DINOv2 network's step costs a minute more here, and holds nothing per replica.)
    "unimatch_v2": ["--perturbation=unimatch_v2", "--teacher_alpha=0.996",
                    "--teacher_alpha_warmup=true", "--opt_type=adamw", "--aug_strong_colour=true",
                    "--aug_strong_blur=0.5", "--cons_loss_fn=hard_ce", "--conf_per_pixel=true",
                    "--cons_average=valid", "--sup_weight=0.5", "--cons_weight=0.5"],
    # Standard augmentation with its colour view, its images read from prepared records (a
    # positioned read inside tf.data) under MirroredStrategy.
    "augment_colour_prepared_records": [
        "--perturbation=augment", "--aug_strong_colour=true", "--aug_offset_range=4",
        "--dataset=camvid", "--data_dir={tmp}/camvid", "--prepared_dir={tmp}/prepared", "--n_sup=4"],
}


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_two_replicas_match_one_device(tmp_path, name):
    # A fresh process for each (logical devices can only be configured before TensorFlow starts,
    # and the collectives of two MirroredStrategy instances in one process can collide).
    if "prepared_records" in name:
        import dataset_fixtures
        dataset_fixtures.write_camvid(tmp_path / "camvid")
    flags = [flag.format(tmp=tmp_path) for flag in CONFIGURATIONS[name]]
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
