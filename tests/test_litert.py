"""export --format=tflite: every LiteRT variant, run by LiteRT's interpreter, against the SavedModel."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_main
from semiseg_tf import litert

pytest.importorskip("ai_edge_litert")

# How far each variant's probabilities may be from the SavedModel's; its labels may differ only
# where the SavedModel's two likeliest classes are closer than twice that.
TOLERANCE = {"float32": 1e-5, "float16": 1e-2, "dynamic_int8": 0.15, "int8": 0.3}


@pytest.fixture(scope="module")
def run(trained_tiny_run):
    return trained_tiny_run


def test_every_litert_variant_agrees_with_the_saved_model_within_its_tolerance(run, tmp_path):
    export_dir = tmp_path / "saved_models" / "run" / "1"
    # The tiny run's classes are nearly tied, which int8 tips over: kept on purpose here.
    done = run_main("export", f"--workdir={run}", f"--export_dir={export_dir}", "--format=tflite",
                    f"--tflite_variants={','.join(litert.VARIANTS)}", "--tflite_size=20,24",
                    "--tflite_probabilities", "--tflite_representative_images=8", "--nokeras_file",
                    "--min_agreement=0")
    assert done.returncode == 0, done.stderr[-2000:]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 20, 24, 3), dtype=np.uint8)
    served = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    expected = served(images=tf.constant(images))["probabilities"].numpy()
    top2 = np.sort(expected, -1)[..., -2:]
    for variant, tolerance in TOLERANCE.items():
        path = export_dir / litert.file_name(variant)
        assert f"{litert.file_name(variant)}: " in done.stdout and "SavedModel's on 8" in done.stdout
        content = path.read_bytes()
        signature = litert.interpreter(content).get_signature_list()["serving_default"]
        assert signature == {"inputs": ["images"], "outputs": ["labels", "probabilities"]}
        outputs = litert.run(content, images)
        assert outputs["labels"].dtype == np.uint8 and outputs["labels"].shape == (3, 20, 24)
        np.testing.assert_allclose(outputs["probabilities"], expected, atol=tolerance)
        close = top2[..., 1] - top2[..., 0] < 2 * tolerance
        assert np.all((outputs["labels"] == expected.argmax(-1)) | close), variant


@pytest.mark.parametrize("arguments, message", [
    (["--format=png"], "--format=png: expected some of saved_model, onnx, tflite, comma-separated"),
    (["--tflite_size=20,24"], "--tflite_size: applies to --format=tflite, which was not asked for "
                              "(--format=saved_model)"),
    (["--format=tflite", "--check_images=4"], "--check_images: applies to --format=onnx, which "
                                              "was not asked for (--format=tflite)"),
    (["--format=onnx", "--min_agreement=2"], "--min_agreement=2.0: must lie in [0, 1]"),
    (["--format=onnx", "--check_images=0"], "--check_images=0: must be positive"),
])
def test_export_flags_that_do_not_apply_or_do_not_parse_are_one_line_before_any_work(
        run, tmp_path, arguments, message):
    done = run_main("export", f"--workdir={run}", f"--export_dir={tmp_path}/e", *arguments)
    assert done.returncode == 2 and done.stderr.strip() == f"error: {message}", done.stderr
    assert "exporting" not in done.stdout and not (tmp_path / "e").exists()


def test_a_format_whose_packages_are_missing_is_named_before_any_work(run, tmp_path, monkeypatch):
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tf2onnx" else find_spec(name, *a))
    done = run_main("export", f"--workdir={run}", f"--export_dir={tmp_path}/e",
                    "--format=tflite,onnx")
    assert done.returncode == 2 and done.stderr.strip() == (
        "error: --format=onnx: needs tf2onnx, not installed: pip install -e '.[onnx]'")
    assert "exporting" not in done.stdout


def test_one_export_writes_onnx_and_litert_at_the_runs_image_size(run, tmp_path):
    """--format=onnx,tflite: both files, each checked; the LiteRT input is the embedded images'
    size (16x16 here), which they all share; a folder not named by a number gets TF Serving's
    layout explained instead of a docker command that would not serve it."""
    export_dir = tmp_path / "my_export"
    done = run_main("export", f"--workdir={run}", f"--export_dir={export_dir}",
                    "--format=onnx,tflite", "--check_images=2", "--tflite_representative_images=2",
                    "--min_agreement=0", "--nokeras_file")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (export_dir / "model.onnx").exists() and (export_dir / "model-float32.tflite").exists()
    assert "model.onnx: labels " in done.stdout and "16x16 input" in done.stdout
    assert "TF Serving reads numbered versions: move it to MODEL/1" in done.stdout
    assert "docker run" not in done.stdout


def test_bad_tflite_flags_are_one_line(run, tmp_path):
    done = run_main("export", f"--workdir={run}", f"--export_dir={tmp_path}/e",
                    "--format=tflite", "--tflite_variants=int4")
    assert done.returncode == 2 and "--tflite_variants=int4: expected some of float32" in done.stderr
    done = run_main("export", f"--workdir={run}", f"--export_dir={tmp_path}/e",
                    "--format=tflite", "--tflite_size=20")
    assert done.returncode == 2 and "--tflite_size='20': expected 2" in done.stderr
    # A size the export would not serve, and a check that would hold more than a request may.
    done = run_main("export", f"--workdir={run}", f"--export_dir={tmp_path}/e",
                    "--format=tflite", "--tflite_size=100000,100000")
    assert done.returncode == 2 and ("error: --tflite_size=100000,100000: 10000000000 pixels, over "
                                     "--max_image_pixels=40000000") in done.stderr, done.stderr
    done = run_main("export", f"--workdir={run}", f"--export_dir={tmp_path}/e",
                    "--format=tflite", "--tflite_size=4000,4000", "--max_request_pixels=20000000")
    assert done.returncode == 2 and ("error: --tflite_representative_images=32: 32 images of "
                                     "4000x4000 are 512000000 pixels, over --max_request_pixels="
                                     "20000000") in done.stderr, done.stderr
    assert not (tmp_path / "e").exists() and "Traceback" not in done.stderr


def test_a_file_that_labels_under_the_agreement_fails_the_export_with_its_figure(run, tmp_path):
    """The same int8 file with the default --min_agreement (99%): the export fails in one line
    naming the file and its share, and writes nothing."""
    export_dir = tmp_path / "saved_models" / "run" / "1"
    done = run_main("export", f"--workdir={run}", f"--export_dir={export_dir}", "--format=tflite",
                    "--tflite_variants=float32,int8", "--tflite_size=20,24",
                    "--tflite_representative_images=8", "--nokeras_file")
    assert done.returncode == 2, done.stdout[-2000:]
    shown = [line for line in done.stdout.splitlines() if "model-int8.tflite: " in line]
    share = float(shown[0].split("labels ")[1].split("%")[0])
    assert share < 99
    assert done.stderr.strip() == (
        f"error: --min_agreement=0.99: model-int8.tflite labels {share:.2f}% of the pixels of 8 of "
        "the run's images as the SavedModel does; the export is not written (--min_agreement=0 "
        "keeps such a file)")
    assert not export_dir.exists() and not list((tmp_path / "saved_models" / "run").iterdir())
