"""predict's confidence maps, unsure pixels and pseudo-labels, read back and trained on."""
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import TINY_RUN, parse_flags, run_main
from semiseg_tf import confidence, trained, training
from semiseg_tf.data import synthetic

IMAGES = 6


def test_normalised_entropy_and_max_probability_hand_worked():
    probabilities = np.array([[0.25, 0.25, 0.25, 0.25], [1, 0, 0, 0], [0.5, 0.5, 0, 0]])
    np.testing.assert_allclose(confidence.normalised_entropy(probabilities),
                               [1, 0, np.log(2) / np.log(4)], atol=1e-6)
    np.testing.assert_allclose(confidence.max_probability(probabilities), [0.25, 1, 0.5])
    labels = np.array([3, 0, 1], np.uint8)
    np.testing.assert_array_equal(confidence.ignore_unsure(
        labels, confidence.max_probability(probabilities), 0.5), [255, 0, 1])


def test_a_16_bit_confidence_png_reads_back_as_its_values():
    values = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    decoded = cv2.imdecode(np.frombuffer(confidence.png16(values), np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, np.round(values * 65535).astype(np.uint16))


@pytest.fixture(scope="module")
def run(trained_tiny_run):
    return trained_tiny_run


def test_predict_writes_confidence_marks_unsure_pixels_and_a_pseudo_label_dataset(run, tmp_path):
    synthetic.write_samples(str(tmp_path / "pool"), IMAGES, image_size=16)
    photos = tmp_path / "pool" / "images"
    names = sorted(os.listdir(photos))
    pixels = np.stack([np.asarray(Image.open(photos / n).convert("RGB")) for n in names])
    probabilities = trained.RunModel(run).predict(pixels)["probabilities"]
    surest = probabilities.max(-1)
    threshold = float(np.median(surest))              # half the pixels on each side
    done = run_main("predict", f"--workdir={run}", f"--input={photos}",
                    f"--output={tmp_path}/out", "--confidence=max_probability",
                    f"--min_confidence={threshold}", f"--pseudo_labels={tmp_path}/pseudo")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (f"wrote {IMAGES} label maps, overlays and max_probability maps" in done.stdout
            and "the pseudo-label dataset" in done.stdout)
    order = []
    for i, name in enumerate(names):
        written = cv2.imread(str(tmp_path / "out" / "confidence" / name), cv2.IMREAD_UNCHANGED)
        assert written.dtype == np.uint16          # 1/65535 steps: a rounding apart at most
        np.testing.assert_allclose(written, surest[i] * 65535, atol=0.51)
        label = np.asarray(Image.open(tmp_path / "out" / "labels" / name))
        expected = np.where(surest[i] < threshold, 255, probabilities[i].argmax(-1))
        np.testing.assert_array_equal(label, expected)
        assert 0 < (label == 255).sum() < label.size or surest[i].min() >= threshold
        mask = np.asarray(Image.open(tmp_path / "pseudo" / "masks" / name))
        np.testing.assert_array_equal(mask, label)
        assert (tmp_path / "pseudo" / "images" / name).read_bytes() == (photos / name).read_bytes()
        order.append((-surest[i].mean(), name[:-len(".png")]))
    listed = (tmp_path / "pseudo" / "labelled.txt").read_text().split()
    assert listed == [name for _, name in sorted(order)]           # surest first
    assert (tmp_path / "pseudo" / "classes.txt").read_text().split() == list(
        synthetic.CLASS_NAMES)

    # The pool as a dataset: prepared and trained on, its unsure pixels ignored.
    cfg, text = parse_flags(**{**TINY_RUN, "workdir": str(tmp_path / "again"),
                               "dataset": "folder", "data_dir": str(tmp_path / "pseudo"),
                               "prepared_dir": str(tmp_path / "prepared"), "n_sup": 3,
                               "n_val": 2, "train_steps": 2, "eval_every": 2})
    result = training.Trainer(cfg, text, out=open(os.devnull, "w")).run()
    assert result.finished and 0 <= result.miou <= 1
    # A second prediction into the same pseudo-label folder is refused before anything is written.
    done = run_main("predict", f"--workdir={run}", f"--input={photos}",
                    f"--output={tmp_path}/out2", f"--pseudo_labels={tmp_path}/pseudo")
    assert done.returncode == 2 and "--pseudo_labels=" in done.stderr
    assert "not empty" in done.stderr and not (tmp_path / "out2").exists()


def test_predict_never_reads_an_earlier_predicts_outputs_inside_its_input(run, tmp_path):
    """Outputs and pseudo-labels written inside the pool are marked, and a second predict over
    the pool reads its photos only (not 2 -> 6 -> 18 images); an output that is the input, or
    holds it, is one line."""
    synthetic.write_samples(str(tmp_path / "pool"), 2, image_size=16)
    pool = tmp_path / "pool"
    for round_ in (1, 2, 3):
        done = run_main("predict", f"--workdir={run}", f"--input={pool}",
                        f"--output={pool}/out{round_}", f"--pseudo_labels={pool}/ds{round_}")
        assert done.returncode == 0, done.stderr[-2000:]
        # The pool's images and masks folders hold 2 PNGs each (the masks read as photos too).
        assert "wrote 4 label maps and overlays" in done.stdout, (round_, done.stdout)
    for folder in ("out1", "ds1"):
        assert (pool / folder / ".semiseg_tf_output").exists()
    # Named directly, a marked folder is read: the user asked for it.
    done = run_main("predict", f"--workdir={run}", f"--input={pool}/ds1/images",
                    f"--output={tmp_path}/again")
    assert done.returncode == 0 and "wrote 4 label maps" in done.stdout, done.stdout
    for output, message in ((pool, "is the --input folder"), (tmp_path, "holds the --input folder")):
        done = run_main("predict", f"--workdir={run}", f"--input={pool}", f"--output={output}")
        assert done.returncode == 2 and f"error: --output={output}: {message}" in done.stderr


def test_the_encoded_signature_can_return_the_confidence(run, tmp_path):
    import tensorflow as tf

    from semiseg_tf import serving
    synthetic.write_samples(str(tmp_path / "pool"), 2, image_size=16)
    paths = sorted((tmp_path / "pool" / "images").iterdir())
    model = trained.RunModel(run)
    module = serving.ServingModule(model.segmenter, {}, encoded_confidence=True)
    result = module.serve_encoded(image_bytes=tf.constant([p.read_bytes() for p in paths]))
    for i, path in enumerate(paths):
        surest = model.predict(np.asarray(Image.open(path).convert("RGB"))[None])[
            "probabilities"][0].max(-1)
        served = tf.io.decode_png(result["confidence_png_bytes"][i], dtype=tf.uint16).numpy()
        np.testing.assert_allclose(served[..., 0], surest * 65535, atol=0.51)
    plain = serving.ServingModule(model.segmenter, {})      # held: its functions refer to it weakly
    assert "confidence_png_bytes" not in plain.serve_encoded(
        image_bytes=tf.constant([paths[0].read_bytes()]))
