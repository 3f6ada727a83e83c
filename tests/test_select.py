"""The select command: an unlabelled pool ranked with a trained run, the chosen images written as a
folder to label, which becomes a training set once its masks are added."""
import csv
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_RUN, parse_flags, run_main
from semiseg_tf import selection, trained, training
from semiseg_tf.data import synthetic

POOL = 8


@pytest.fixture(scope="module")
def run(trained_tiny_run):
    return trained_tiny_run


@pytest.fixture
def pool(tmp_path):
    """POOL synthetic scenes (their true masks kept apart, as the annotator's answers) and a file
    that is not an image."""
    synthetic.write_samples(str(tmp_path / "scenes"), POOL, image_size=16)
    shutil.copytree(tmp_path / "scenes" / "images", tmp_path / "pool")
    (tmp_path / "pool" / "broken.png").write_bytes(b"not a png")
    return tmp_path / "pool"


def probabilities_of(run, path):
    image = np.asarray(Image.open(path).convert("RGB"))[None]
    return trained.RunModel(run).predict(image)["probabilities"][0]


def entropy_of(run, path):
    return selection.uncertainty(probabilities_of(run, path), "entropy")


def test_rare_classes_weigh_each_score_by_the_pools_rare_predicted_classes(run, pool, tmp_path):
    names = sorted(name for name in os.listdir(pool) if name != "broken.png")
    probabilities = {name: probabilities_of(run, pool / name) for name in names}
    shares = {name: selection.class_shares(p) for name, p in probabilities.items()}
    frequency = np.mean([shares[name] for name in names], axis=0)
    expected = {name: selection.uncertainty(probabilities[name], "entropy")
                * selection.rare_class_weight(shares[name], frequency) for name in names}
    # The pool's images differ in their rare classes, so the weights move the scores.
    assert len({round(selection.rare_class_weight(shares[n], frequency), 6) for n in names}) > 1
    done = run_main("select", f"--workdir={run}", f"--pool={pool}", "--budget=3",
                    f"--to_label={tmp_path}/rare", "--nodiversity", "--rare_classes")
    assert done.returncode == 1, done.stderr[-2000:]
    with open(tmp_path / "rare" / "selected.csv") as f:
        rows = list(csv.DictReader(f))
    assert [os.path.basename(row["image"]) for row in rows] == sorted(
        names, key=lambda name: -expected[name])[:3]
    for row in rows:
        assert float(row["score"]) == pytest.approx(expected[os.path.basename(row["image"])],
                                                    abs=1e-6)


def test_select_writes_the_most_uncertain_images_as_a_folder_that_trains_once_masked(
        run, pool, tmp_path):
    listed = sorted(os.listdir(pool))
    done = run_main("select", f"--workdir={run}", f"--pool={pool}", "--budget=3",
                    f"--to_label={tmp_path}/to_label", "--nodiversity")
    assert done.returncode == 1, done.stderr[-2000:]           # the broken file, skipped
    skipped = [line for line in done.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 1 and "broken.png" in skipped[0], done.stderr
    assert sorted(os.listdir(pool)) == listed                  # nothing written into the pool
    with open(tmp_path / "to_label" / "selected.csv") as f:
        rows = list(csv.DictReader(f))
    # The scores are the teacher's mean normalised entropy, the three highest of the pool's.
    expected = {name: entropy_of(run, pool / name) for name in listed if name != "broken.png"}
    highest = sorted(expected, key=lambda name: -expected[name])[:3]
    assert [os.path.basename(row["image"]) for row in rows] == highest
    for row in rows:
        assert float(row["score"]) == pytest.approx(expected[os.path.basename(row["image"])],
                                                    abs=1e-6)
    out = tmp_path / "to_label"
    for name in highest:
        assert (out / "images" / name).read_bytes() == (pool / name).read_bytes()
        assert (out / "overlays" / name).exists()
    assert os.listdir(out / "masks") == []
    assert (out / "labelled.txt").read_text().split() == [n[:-len(".png")] for n in highest]

    # The annotator's masks added: the folder trains as a folder dataset.
    for name in highest:
        shutil.copyfile(tmp_path / "scenes" / "masks" / name, out / "masks" / name)
    cfg, text = parse_flags(**{**TINY_RUN, "workdir": str(tmp_path / "next"), "dataset": "folder",
                               "data_dir": str(out), "prepared_dir": str(tmp_path / "prepared"),
                               "n_sup": 2, "n_val": 1, "train_steps": 2, "eval_every": 2})
    result = training.Trainer(cfg, text, out=open(os.devnull, "w")).run()
    assert result.finished and 0 <= result.miou <= 1


def test_diversity_does_not_choose_an_image_and_its_near_duplicate_together(run, pool, tmp_path):
    # The pool's most uncertain scene and a copy of it with one pixel changed: the two highest
    # scores, which --nodiversity takes together and --diversity keeps apart.
    scores = {name: entropy_of(run, pool / name) for name in sorted(os.listdir(pool))
              if name.startswith("val_")}
    top = max(scores, key=scores.get)
    copy = np.asarray(Image.open(pool / top).convert("RGB")).copy()
    copy[0, 0] = 255 - copy[0, 0]
    Image.fromarray(copy).save(pool / "top_again.png")
    chosen = {}
    for diversity in ("--diversity", "--nodiversity"):
        done = run_main("select", f"--workdir={run}", f"--pool={pool}", "--budget=2",
                        f"--to_label={tmp_path}/{diversity}", diversity, f"--candidates={POOL}")
        assert done.returncode == 1, done.stderr[-2000:]
        with open(tmp_path / diversity / "selected.csv") as f:
            chosen[diversity] = [os.path.basename(row["image"]) for row in csv.DictReader(f)]
    assert set(chosen["--nodiversity"]) == {top, "top_again.png"}
    assert len({top, "top_again.png"} & set(chosen["--diversity"])) == 1, chosen


def test_select_refuses_its_output_inside_the_pool_a_used_folder_and_a_bad_budget(
        run, pool, tmp_path):
    workdir = f"--workdir={run}"
    for args, message in (([workdir, f"--to_label={pool}/chosen", "--budget=2"], "inside --pool"),
                          ([workdir, f"--to_label={tmp_path}/x", "--budget=0"],
                           "--budget=0: must be"),
                          ([workdir, f"--to_label={pool.parent}", "--budget=2"], "not empty"),
                          ([f"--saved_model={tmp_path}", f"--to_label={tmp_path}/y", "--budget=2",
                            "--select_by=disagreement"], "needs --workdir")):
        done = run_main("select", f"--pool={pool}", *args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    assert not (pool / "chosen").exists()
