"""The 2-D toy: data regeneration, signed distances, the contour constraint, boundary scores, CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from semiseg_tf.paper.toy2d import data, evaluate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_regeneration_reproduces_the_papers_samples():
    region = data.load_region()
    assert region.sum() == 126979 and (~region).sum() == 135165
    pixels, labels = data.region_pixels(region, 35)
    assert len(pixels) == 149430 and (labels == 0).sum() == 80934
    with np.load(data.SAMPLES_PATH) as shipped:
        np.testing.assert_array_equal(labels, shipped["clf_unsup_y"])
        # The shipped points are these pixels plus 6 px of Gaussian jitter, in the same order.
        residual = data.to_pixels(shipped["clf_unsup_X"], region.shape) - pixels
    assert np.abs(residual.mean(0)).max() < 0.05
    assert np.allclose(residual.std(0), 6.0, atol=0.05)
    assert np.abs(residual).max() < 6 * 6
    assert len(data.region_pixels(region, 0)[0]) == 512 * 512


def test_labelled_points_are_the_papers():
    x, y = data.labelled_points()
    assert y.tolist() == [1, 0, 1, 0, 0, 1, 0, 1, 0, 1]
    np.testing.assert_allclose(data.to_pixels(x[0], (512, 512)), (144.9, 115.5), atol=0.1)
    # Each labelled point lies in its own class region.
    region = data.load_region()
    pixels = np.floor(data.to_pixels(x, region.shape)).astype(int)
    assert region[pixels[:, 0], pixels[:, 1]].astype(int).tolist() == y.tolist()


def test_signed_distance_is_positive_in_class_one_with_hand_checked_values():
    region = np.zeros((7, 7), bool)
    region[2:5, 2:5] = True
    distance = data.signed_distance_map(region)
    assert distance[3, 3] == 2.0            # centre of the 3x3 block: 2 px to (3, 1)
    assert distance[2, 2] == 1.0            # block corner: 1 px to (1, 2)
    assert distance[3, 6] == -2.0           # 2 px right of the block
    assert distance[0, 0] == pytest.approx(-np.sqrt(8))   # diagonal to (2, 2)
    real = data.signed_distance_map(data.load_region())
    x, y = data.labelled_points()
    assert np.sign(data.lookup(real, x)).tolist() == [1 if c else -1 for c in y]


def _normalised(pixel_y, pixel_x, size=64):
    """Normalised point whose grid_sample (align_corners=False) pixel coordinate is (y, x)."""
    return [(2 * pixel_y + 1) / size - 1, (2 * pixel_x + 1) / size - 1]


def test_lookup_and_contour_constraint_on_hand_placed_points():
    columns = np.tile(np.arange(64, dtype=np.float64), (64, 1))      # the map's value is x
    points = np.array([_normalised(10, 10)] * 4)
    perturbed = np.array([_normalised(10, 13), _normalised(10, 15), _normalised(40, 10),
                          _normalised(10, 6.5)])
    np.testing.assert_allclose(data.lookup(columns, perturbed), [13, 15, 10, 6.5])
    # Range 4: +3 px across the contours passes, +5 does not, 30 px along a contour does, -3.5 does.
    assert data.contour_constraint(columns, points, perturbed, 4.0).tolist() == [1, 0, 1, 1]
    outside = np.array([[2.0, 0.0]])                                   # beyond the image: zero
    assert data.lookup(columns, outside).tolist() == [0.0]


def test_boundary_scores_of_a_shifted_straight_boundary():
    region = np.zeros((64, 64), bool)
    region[:, 32:] = True
    predicted = np.zeros((64, 64), bool)
    predicted[:, 36:] = True                # the boundary 4 px to the right
    distance = data.signed_distance_map(region)
    scores = evaluate.boundary_scores(predicted, region, distance, band=2)
    assert scores["pixel_accuracy"] == 1 - 4 / 64
    assert scores["accuracy_within_2px"] == 0.5           # columns 30-33 near; 32, 33 wrong
    # Edges: true columns 31, 32; predicted 35, 36: distances 3 and 4 both ways.
    assert scores["predicted_to_true_boundary_px"]["mean"] == 3.5
    assert scores["true_to_predicted_boundary_px"]["p95"] == 4.0
    # The true signed distance along the predicted edge: 4 px (column 35) and 5 px (column 36)
    # inside class 1, so the level is 4.5 +- 0.5: parallel to the truth, shifted into class 1.
    assert scores["predicted_boundary_level_px"] == {"mean": 4.5, "std": 0.5}
    perfect = evaluate.boundary_scores(region, region, distance)
    assert perfect["pixel_accuracy"] == 1 and perfect["predicted_to_true_boundary_px"]["mean"] == 0
    one_class = evaluate.boundary_scores(np.zeros_like(region), region, distance)
    assert one_class["predicted_to_true_boundary_px"]["mean"] is None


def _toy(tmp_path, *flags):
    return subprocess.run([sys.executable, "-m", "semiseg_tf.paper.toy2d", f"--workdir={tmp_path}/run",
                           *flags], cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("flagfile", ["semisup_nogap_contours", "sup_gap"])
def test_toy_command_writes_pictures_and_scores(tmp_path, flagfile):
    # A small network and a large erosion (fewer points) keep it to seconds.
    proc = _toy(tmp_path, f"--flagfile=flags/toy2d/{flagfile}.flags", "--num_epochs=2",
                "--render_every=1", "--hidden_size=16", "--region_erode_radius=100",
                "--batch_size=1024")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    assert (run / "decision.png").exists() and (run / "renders" / "epoch_00001.png").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"pixel_accuracy", "accuracy_within_35px", "predicted_to_true_boundary_px",
                            "true_to_predicted_boundary_px", "predicted_boundary_level_px",
                            "authors_error_rate", "epochs", "seconds_per_epoch"}
    assert metrics["epochs"] == 2
    # The saved probability grid scores the same as metrics.json says.
    with np.load(run / "decision.npz") as saved:
        probability = saved["probability"]
    assert probability.shape == (512, 512)
    assert metrics["pixel_accuracy"] == np.mean((probability >= 0.5) == data.load_region())
    assert "--region_erode_radius=100" in (run / "flags.txt").read_text()
    assert "epoch 2/2" in proc.stdout


def test_toy_resumes_a_killed_run_exactly(tmp_path):
    # Stopping after epoch 1 and running the command again must give the same network as one
    # straight run: the checkpoint carries the weights, Adam, the noise seed and the batch order.
    small = ["--flagfile=flags/toy2d/semisup_nogap_contours.flags", "--hidden_size=16",
             "--region_erode_radius=100", "--batch_size=1024", "--render_every=0", "--seed=3"]
    straight = subprocess.run([sys.executable, "-m", "semiseg_tf.paper.toy2d", *small, "--num_epochs=2",
                               f"--workdir={tmp_path}/straight"], cwd=REPO, capture_output=True,
                              text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    first = _toy(tmp_path, *small, "--num_epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = _toy(tmp_path, *small, "--num_epochs=2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after epoch 1" in resumed.stdout and "epoch 1/2" not in resumed.stdout
    assert "epoch 2/2" in resumed.stdout

    def probability(run):
        with np.load(tmp_path / run / "decision.npz") as saved:
            return saved["probability"]
    np.testing.assert_array_equal(probability("run"), probability("straight"))
    changed = _toy(tmp_path, *small, "--num_epochs=2", "--perturb_noise_std=5")
    assert changed.returncode == 2
    assert "holds a run with other flags (differing: --perturb_noise_std=30.0 " \
        "--perturb_noise_std=5)" in changed.stderr


def test_toy_flagfiles_hold_the_four_configurations():
    expected = {
        "sup_gap": ["--region_erode_radius=35", "--num_epochs=25", "--cons_weight=0"],
        "semisup_gap": ["--region_erode_radius=35", "--num_epochs=100", "--cons_weight=10"],
        "semisup_nogap_isotropic": ["--region_erode_radius=0", "--perturb_noise_std=30.0",
                                    "--cons_loss_fn=logits_var", "--norm_layer=none"],
        "semisup_nogap_contours": ["--region_erode_radius=0", "--perturb_noise_std=30.0",
                                   "--dist_contour_range=4.0", "--cons_weight=1.0"],
    }
    for name, lines in expected.items():
        text = open(os.path.join(REPO, "flags", "toy2d", f"{name}.flags")).read().splitlines()
        assert set(lines) <= set(text), name
    isotropic = open(os.path.join(REPO, "flags", "toy2d", "semisup_nogap_isotropic.flags")).read()
    assert "dist_contour_range" not in isotropic.replace("# ", "")


@pytest.mark.parametrize("flag, message", [
    ("--perturb_noise_std=abc",
     "--perturb_noise_std='abc': expected one or two (y,x) non-negative numbers of pixels"),
    ("--region_erode_radius=150", "--region_erode_radius=150: no points are left after erosion"),
])
def test_toy_bad_flag_is_one_line(tmp_path, flag, message):
    proc = _toy(tmp_path, flag)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: {message}"


def test_toy_consistency_losses_match_their_formulas():
    from semiseg_tf.paper.toy2d import model
    student = np.array([[2.0, -1.0], [0.5, 0.5]], np.float32)
    teacher = np.array([[1.0, 0.0], [-2.0, 1.0]], np.float32)

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    p, q = softmax(student), softmax(teacher)
    expected = {
        "var": ((p - q) ** 2).mean(-1),                         # mean over the two classes
        "logits_var": ((student - teacher) ** 2).mean(-1),      # [1 + 1, 6.25 + 0.25] / 2
        "bce": -(q * np.log(p + 1e-6) + (1 - q) * np.log(1 - p + 1e-6)).mean(-1),
    }
    np.testing.assert_allclose(expected["logits_var"], [1.0, 3.25])
    for name, values in expected.items():
        got = model.consistency_per_sample(student, teacher, name).numpy()
        np.testing.assert_allclose(got, values, rtol=1e-5, err_msg=name)


def test_toy_table_averages_the_seeds(tmp_path):
    from semiseg_tf.paper import toy_table

    def metrics(accuracy, level_mean):
        return {"pixel_accuracy": accuracy, "accuracy_within_35px": 0.5,
                "predicted_to_true_boundary_px": {"mean": 4.0, "p95": 9.0},
                "true_to_predicted_boundary_px": {"mean": None, "p95": None},
                "predicted_boundary_level_px": {"mean": level_mean, "std": 1.0},
                "authors_error_rate": 0.0, "epochs": 2, "seconds_per_epoch": 3.0}
    for seed, (accuracy, level) in {1: (0.90, -40.0), 2: (0.96, -20.0)}.items():
        os.makedirs(tmp_path / f"sup_gap_{seed}")
        (tmp_path / f"sup_gap_{seed}" / "metrics.json").write_text(json.dumps(metrics(accuracy, level)))
    table = toy_table.results_table(["sup_gap", "semisup_gap"], [1, 2, 3], str(tmp_path))
    rows = table.splitlines()
    # mean 93.00, sample std sqrt(((90-93)^2 + (96-93)^2) / 1) = 4.24; level -30.0 ± 14.1.
    assert rows[2] == ("| `sup_gap` | 2 | 93.00 ± 4.24 | 50.00 ± 0.00 | 4.0 ± 0.0 | 9.0 ± 0.0 | — | "
                       "-30.0 ± 14.1 | 1.0 ± 0.0 | 0.00 ± 0.00 | 3.0 ± 0.0 |")
    assert rows[3].startswith("| `semisup_gap` | 0 | — |")
    # A run whose metrics.json predates a score: the mean says how many runs it covers.
    older = metrics(0.5, None)
    del older["predicted_boundary_level_px"]
    os.makedirs(tmp_path / "sup_gap_3")
    (tmp_path / "sup_gap_3" / "metrics.json").write_text(json.dumps(older))
    row = toy_table.results_table(["sup_gap"], [1, 2, 3], str(tmp_path)).splitlines()[2]
    assert "| -30.0 ± 14.1 (2 of 3 runs) | 1.0 ± 0.0 (2 of 3 runs) |" in row
    assert row.startswith("| `sup_gap` | 3 | 78.67 ± 25.01 |")


def test_toy_training_treats_the_two_classes_alike():
    # Swapping the class labels (and the sign of the distance map, and the order of the output
    # units of an otherwise identical network) must swap the predictions exactly, through the
    # supervised loss, the confidence mask, the contour constraint, dropout and the EMA: so a run
    # that favours one class does so because of the data, not the code.
    from semiseg_tf.paper.toy2d import model
    toy = data.load(erode_radius=0, noise_std=2.0, seed=1)

    def trainer(distance_map):
        params = model.ToyParams(cons_loss_fn="logits_var", cons_weight=1.0, conf_thresh=0.55,
                                 cons_dropout=False, perturb_std=(30 / 256, 30 / 256))
        return model.ToyTrainer(params, dict(hidden_size=32, batch_norm=False, dropout=True), 7,
                                lambda x, xp: data.contour_constraint(distance_map, x, xp, 4.0))
    ours, swapped = trainer(toy.distance_map), trainer(-toy.distance_map)
    for net, twin in ((ours.student, swapped.student), (ours.teacher, swapped.teacher)):
        for weight, twin_weight in zip(net.weights, twin.weights):
            value = weight.numpy()
            twin_weight.assign(value[..., ::-1] if weight.path.startswith("logits/") else value)
    rng = np.random.RandomState(0)
    for _ in range(30):
        sup, unsup = rng.randint(0, 10, 64), rng.randint(0, len(toy.unlabelled_x), 256)
        logs = ours.step(toy.labelled_x[sup], toy.labelled_y[sup], toy.unlabelled_x[unsup])
        swapped.step(toy.labelled_x[sup], 1 - toy.labelled_y[sup], toy.unlabelled_x[unsup])
    assert float(logs["conf_rate"]) > 0.5 and float(logs["cons_loss"]) > 0    # consistency was on
    points = toy.unlabelled_x[::50]
    np.testing.assert_allclose(ours.predict_probability(points),
                               1 - swapped.predict_probability(points), atol=1e-5)
