"""From a trained run to a served model: run.json, export (SavedModel, .keras, ONNX), evaluate and
predict, each checked against the trained teacher itself or against the trainer's own numbers."""
import json
import os
import re
import subprocess
import sys
from io import BytesIO

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import TINY_RUN, parse_flags, run_main
from semiseg_tf import export, metrics, run_info, serving, trained, training
from semiseg_tf.data import base, synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VAL_IMAGES = 5


def command(*args, cwd=None):
    """Runs `python -m semiseg_tf.X ...` (or a script) as a user would; returns the finished process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd or REPO,
                          env=env)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished tiny run (tiny_unet, multiples of 4) and its trainer, whose teacher is in memory."""
    workdir = tmp_path_factory.mktemp("serving") / "run"
    cfg, text = parse_flags(**{**TINY_RUN, "workdir": str(workdir),
                               "synthetic_num_val": VAL_IMAGES, "eval_batch_size": 2})
    trainer = training.Trainer(cfg, text, out=open(os.devnull, "w"))
    trainer.run()
    return trainer


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    """The run exported, with model.onnx, under saved_models/run/1 of a fresh folder."""
    root = tmp_path_factory.mktemp("exports")
    export_dir = serving.default_export_dir(run.cfg.run.workdir, root=str(root / "saved_models"))
    model = trained.RunModel(run.cfg.run.workdir)
    serving.export(model, export_dir, onnx=export.training_images(run.source, 4, (16, 16)),
                   out=open(os.devnull, "w"))
    return export_dir


def teacher_probabilities(trainer, images):
    """The oracle: the trained teacher itself on numpy-normalised images, padded centrally to
    multiples of 4 with the mean colour (0), the padding cropped off, softmax."""
    x = (images.astype(np.float64) / 255 - np.array(base.IMAGENET_MEAN)) / np.array(base.IMAGENET_STD)
    height, width = images.shape[1:3]
    pad_h, pad_w = -height % 4, -width % 4
    x = np.pad(x, [(0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)])
    logits = trainer.model.teacher(x.astype(np.float32), training=False).numpy().astype(np.float64)
    logits = logits[:, pad_h // 2:pad_h // 2 + height, pad_w // 2:pad_w // 2 + width]
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def png(image):
    out = BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def test_run_json_holds_what_later_commands_need(run):
    info = run_info.load(run.cfg.run.workdir)
    assert info.class_names == synthetic.CLASS_NAMES and info.num_classes == 6
    assert info.palette[:2] == ((0, 0, 0), (128, 0, 0))        # the Pascal VOC colours
    assert info.rgb_mean == base.IMAGENET_MEAN and info.rgb_std == base.IMAGENET_STD
    assert (info.arch, info.input_multiple, info.crop_size) == ("tiny_unet", 4, (16, 16))
    assert info.evaluated_network == "teacher" and not info.fill_holes
    with open(os.path.join(run.cfg.run.workdir, "run.json")) as f:
        data = json.load(f)
    assert data["input"]["normalisation"] == "(pixel / 255 - mean) / std"
    assert run_info.RunInfo.from_json(data) == info


def test_a_run_without_run_json_gets_it_recomputed_from_its_flags(run, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "flags.txt").write_text(open(os.path.join(run.cfg.run.workdir, "flags.txt")).read())
    assert run_info.load(str(old)) == run_info.load(run.cfg.run.workdir)


def test_a_run_from_before_run_json_still_exports(run, tmp_path):
    import shutil
    old = tmp_path / "old_run"
    shutil.copytree(run.cfg.run.workdir, old)
    os.remove(old / "run.json")
    export_dir = str(tmp_path / "saved_models" / "old_run" / "1")
    serving.export(trained.RunModel(str(old)), export_dir, keras_file=False,
                  out=open(os.devnull, "w"))
    with open(os.path.join(export_dir, "assets", "run.json")) as f:
        assert run_info.RunInfo.from_json(json.load(f)) == run_info.load(run.cfg.run.workdir)


def test_saved_model_in_a_fresh_process_without_semiseg_tf_equals_the_teacher(run, exported,
                                                                            tmp_path):
    rng = np.random.default_rng(0)
    odd = rng.integers(0, 256, (1, 97, 131, 3), dtype=np.uint8)      # not multiples of 4
    batch = rng.integers(0, 256, (3, 40, 52, 3), dtype=np.uint8)
    np.savez(tmp_path / "inputs.npz", odd=odd, batch=batch)
    (tmp_path / "a.png").write_bytes(png(odd[0]))
    (tmp_path / "b.png").write_bytes(png(batch[1]))
    script = f"""
import sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load({exported!r})
inputs = np.load({str(tmp_path / "inputs.npz")!r})
serve, encoded = model.signatures["serving_default"], model.signatures["encoded"]
out = {{}}
for name in ("odd", "batch"):
    result = serve(images=tf.constant(inputs[name]))
    out[name + "_labels"], out[name + "_probabilities"] = (result["labels"].numpy(),
                                                           result["probabilities"].numpy())
files = [open({str(tmp_path / "a.png")!r}, "rb").read(), open({str(tmp_path / "b.png")!r}, "rb").read()]
result = encoded(image_bytes=tf.constant(files))
out["encoded_labels"] = result["labels"].numpy()
out["encoded_sizes"] = result["image_size"].numpy()
out["encoded_png_0"] = tf.io.decode_png(result["label_png_bytes"][0]).numpy()
out["encoded_png_1"] = tf.io.decode_png(result["label_png_bytes"][1]).numpy()
np.savez({str(tmp_path / "outputs.npz")!r}, **out)
print("semiseg_tf imported:", any(m.split(".")[0] == "semiseg_tf" for m in sys.modules))
"""
    done = command("-c", script, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "semiseg_tf imported: False" in done.stdout
    out = np.load(tmp_path / "outputs.npz")
    for name, images in (("odd", odd), ("batch", batch)):
        expected = teacher_probabilities(run, images)
        assert out[f"{name}_probabilities"].shape == expected.shape
        np.testing.assert_allclose(out[f"{name}_probabilities"], expected, atol=1e-5)
        agree = out[f"{name}_labels"] == expected.argmax(-1)
        # Labels may differ only where two classes are tied to float precision.
        top2 = np.sort(expected, -1)[..., -2:]
        assert np.all(agree | (top2[..., 1] - top2[..., 0] < 1e-5))
        assert out[f"{name}_labels"].dtype == np.int32
    # The encoded signature: the same labels from PNG files, -1 beyond the smaller image.
    np.testing.assert_array_equal(out["encoded_sizes"], [[97, 131], [40, 52]])
    np.testing.assert_array_equal(out["encoded_labels"][0], out["odd_labels"][0])
    np.testing.assert_array_equal(out["encoded_labels"][1, :40, :52], out["batch_labels"][1])
    assert (out["encoded_labels"][1, 40:] == -1).all() and (out["encoded_labels"][1, :, 52:] == -1).all()
    np.testing.assert_array_equal(out["encoded_png_0"][..., 0], out["odd_labels"][0])
    np.testing.assert_array_equal(out["encoded_png_1"][..., 0], out["batch_labels"][1])


def test_saved_model_cli_lists_both_signatures(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    done = subprocess.run([cli, "show", "--dir", exported, "--all"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

    def signature(name):
        block = done.stdout.split(f"signature_def['{name}']:")[1].split("signature_def[")[0]
        tensors = re.findall(r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+"
                             r"shape: \(([-\d, ]+)\)", block)
        return {(kind, tensor): (dtype, shape) for kind, tensor, dtype, shape in tensors}
    assert signature("serving_default") == {
        ("inputs", "images"): ("DT_UINT8", "-1, -1, -1, 3"),
        ("outputs", "labels"): ("DT_INT32", "-1, -1, -1"),
        ("outputs", "probabilities"): ("DT_FLOAT", "-1, -1, -1, 6")}
    assert signature("encoded") == {
        ("inputs", "image_bytes"): ("DT_STRING", "-1"),
        ("outputs", "labels"): ("DT_INT32", "-1, -1, -1"),
        ("outputs", "label_png_bytes"): ("DT_STRING", "-1"),
        ("outputs", "image_size"): ("DT_INT32", "-1, 2")}


def test_the_exports_signatures_answer_an_empty_request_with_empty_outputs(exported):
    loaded = tf.saved_model.load(exported)
    served = loaded.signatures["serving_default"](images=tf.zeros([0, 12, 20, 3], tf.uint8))
    assert served["labels"].shape == (0, 12, 20) and served["probabilities"].shape == (0, 12, 20, 6)
    served = loaded.signatures["encoded"](image_bytes=tf.constant([], tf.string))
    assert served["labels"].shape == (0, 0, 0) and served["image_size"].shape == (0, 2)


def test_export_folder_assets_keras_and_onnx(run, exported):
    assert exported.endswith(os.path.join("saved_models", "run", "1"))
    assets = os.path.join(exported, "assets")
    assert open(os.path.join(assets, "class_names.txt")).read().split("\n")[:6] == list(
        synthetic.CLASS_NAMES)
    assert open(os.path.join(assets, "palette.txt")).readline() == "0 0 0\n"
    assert (open(os.path.join(assets, "flags.txt")).read()
            == open(os.path.join(run.cfg.run.workdir, "flags.txt")).read())
    with open(os.path.join(assets, "metrics.json")) as f, \
            open(os.path.join(run.cfg.run.workdir, "metrics.json")) as g:
        assert json.load(f) == json.load(g)
    with open(os.path.join(assets, "export.json")) as f:
        info = json.load(f)
    assert info["network"] == "teacher" and info["step"] == 4 and info["options"]["flip"] is False
    assert oct(os.stat(exported).st_mode & 0o777) != oct(0o700)   # readable by a server's user

    import keras
    images = np.random.default_rng(1).integers(0, 256, (2, 24, 28, 3), dtype=np.uint8)
    network = keras.saving.load_model(os.path.join(exported, "network.keras"))
    x = ((images / 255 - np.array(base.IMAGENET_MEAN)) / np.array(base.IMAGENET_STD)).astype(np.float32)
    np.testing.assert_allclose(network(x, training=False).numpy(),
                               run.model.teacher(x, training=False).numpy(), atol=1e-5)

    import onnxruntime
    session = onnxruntime.InferenceSession(os.path.join(exported, "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    onnx_labels, onnx_probabilities = session.run(["labels", "probabilities"], {"images": images})
    np.testing.assert_allclose(onnx_probabilities, teacher_probabilities(run, images), atol=1e-5)
    assert onnx_labels.shape == (2, 24, 28)


def test_network_keras_loads_in_a_fresh_process_after_only_import_semiseg_tf(run, exported,
                                                                             tmp_path):
    images = np.random.default_rng(2).integers(0, 256, (1, 24, 28, 3), dtype=np.uint8)
    x = ((images / 255 - np.array(base.IMAGENET_MEAN)) / np.array(base.IMAGENET_STD)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    script = f"""
import numpy as np
import keras
import semiseg_tf
network = keras.saving.load_model({os.path.join(exported, "network.keras")!r})
np.save({str(tmp_path / "y.npy")!r}, network(np.load({str(tmp_path / "x.npy")!r}), training=False))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=str(tmp_path), env={k: v for k, v in os.environ.items()
                                                  if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"),
                               run.model.teacher(x, training=False).numpy(), atol=1e-5)


def test_commands_start_without_tensorflows_notices_but_keep_other_errors():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", "import semiseg_tf, tensorflow as tf; "
                           "print(float(tf.reduce_sum(tf.ones(3))))"],
                          capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == 0 and done.stdout == "3.0\n", done.stderr[-2000:]
    assert done.stderr == "", done.stderr          # no CUDA, oneDNN or CPU-feature notices
    done = subprocess.run([sys.executable, "-m", "semiseg_tf.prepare", "--help"],
                          capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == 0 and "--data_dir" in done.stdout and done.stderr == "", done.stderr
    # A command outside run_command loads TensorFlow through the quiet start as well (-X importtime
    # lists the modules imported, on stderr).
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "semiseg_tf.paper.toy2d", "--help"],
                          capture_output=True, text=True, cwd=REPO, env=env)
    assert "--workdir" in done.stdout                       # absl's help, which exits 1
    assert re.search(r"\| +semiseg_tf\.quiet_start$", done.stderr, re.M), done.stderr[-1000:]
    # Anything else written while TensorFlow loads still reaches the terminal.
    done = subprocess.run([sys.executable, "-c", "import os, sys\n"
                           "from semiseg_tf import quiet_start\n"
                           "with quiet_start._filtered_stderr():\n"
                           "    os.write(2, b'cuInit noise\\nreal problem\\n')\n"],
                          capture_output=True, text=True, cwd=REPO, env=env)
    assert done.stderr == "real problem\n", done.stderr


def test_exports_and_their_scores_go_beside_the_run_whatever_the_current_directory(
        tmp_path, monkeypatch):
    import types
    from semiseg_tf import evaluate
    (tmp_path / "runs" / "saved_models" / "cutmix" / "1").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert serving.default_export_dir("../runs/cutmix") == str(
        tmp_path / "runs" / "saved_models" / "cutmix" / "2")
    model = types.SimpleNamespace(path="../runs/saved_models/cutmix/1",
                                  options=types.SimpleNamespace(tag=lambda: "flip"))
    assert evaluate._default_output_dir(model, "val") == str(
        tmp_path / "runs" / "saved_models" / "cutmix" / "evaluation" / "1-val-flip")
    assert os.listdir(tmp_path / "elsewhere") == []


def test_export_never_overwrites_and_leaves_no_partial_folder(run, exported):
    parent = os.path.dirname(exported)
    assert serving.default_export_dir(run.cfg.run.workdir, root=os.path.dirname(parent)).endswith(
        os.path.join("run", "2"))
    with pytest.raises(Exception, match="exists already"):
        serving.export(trained.RunModel(run.cfg.run.workdir), exported)
    assert os.listdir(parent) == ["1"]        # no temporary folder left beside it


def test_evaluate_reproduces_the_trainers_final_miou_exactly(run, tmp_path):
    with open(os.path.join(run.cfg.run.workdir, "metrics.json")) as f:
        final = json.load(f)
    done = run_main("evaluate", f"--workdir={run.cfg.run.workdir}",
                   f"--output_dir={tmp_path}/eval")
    assert done.returncode == 0, done.stderr[-2000:]
    with open(tmp_path / "eval" / "scores.json") as f:
        scores = json.load(f)
    assert scores["miou"] == final["miou"]
    assert scores["confusion"] == final["confusion"]
    assert scores["pixel_accuracy"] == final["pixel_accuracy"]
    assert scores["images"] == VAL_IMAGES
    assert f"mIoU {100 * final['miou']:.2f}%" in done.stdout
    confusion = Image.open(tmp_path / "eval" / "confusion.png")
    assert confusion.size[0] > 100 and confusion.mode == "RGB"
    # The mmsegmentation convention: the same confusion, the absent classes out of the means.
    done = run_main("evaluate", f"--workdir={run.cfg.run.workdir}", "--absent_classes=skip",
                    f"--output_dir={tmp_path}/skip")
    with open(tmp_path / "skip" / "scores.json") as f:
        skipped = json.load(f)
    expected = metrics.scores(np.array(final["confusion"]), list(final["per_class_iou"]), "skip")
    assert skipped["miou"] == expected["miou"] and skipped["mean_f1"] == expected["mean_f1"]
    assert skipped["absent_classes"]["counted_as"] == "skip"
    assert f"mean F1 {100 * expected['mean_f1']:.2f}%" in done.stdout


def test_evaluate_a_saved_model_and_a_folder_of_files_agree_with_the_trainer(run, exported,
                                                                           tmp_path):
    """The run's validation scenes written as files (synthetic.write_samples) and scored through the
    SavedModel are the trainer's validation, so give its mIoU."""
    with open(os.path.join(run.cfg.run.workdir, "metrics.json")) as f:
        final = json.load(f)
    synthetic.write_samples(str(tmp_path / "files"), VAL_IMAGES, image_size=16)
    done = run_main("evaluate", f"--saved_model={exported}",
                   f"--images={tmp_path}/files/images", f"--masks={tmp_path}/files/masks",
                   f"--output_dir={tmp_path}/eval")
    assert done.returncode == 0, done.stderr[-2000:]
    with open(tmp_path / "eval" / "scores.json") as f:
        scores = json.load(f)
    assert scores["confusion"] == final["confusion"]
    assert scores["miou"] == pytest.approx(final["miou"], abs=1e-12)


def test_evaluate_needs_neither_the_weights_file_nor_the_split_file(run, tmp_path):
    """A run scored on another machine: its pretrained-weights file and split list are gone."""
    import shutil
    moved = tmp_path / "moved"
    shutil.copytree(run.cfg.run.workdir, moved)
    with open(moved / "flags.txt", "a") as f:
        f.write("--backbone_weights=/gone/resnet101.h5\n--split_file=/gone/labelled.txt\n")
    done = run_main("evaluate", f"--workdir={moved}", f"--output_dir={tmp_path}/e")
    assert done.returncode == 0, done.stderr[-2000:]
    with open(tmp_path / "e" / "scores.json") as f, open(moved / "metrics.json") as g:
        assert json.load(f)["miou"] == json.load(g)["miou"]


def test_evaluate_on_another_dataset_from_its_flags(run, tmp_path):
    """--dataset given: the data flags start from their defaults (64-px synthetic scenes here, not
    the run's 16-px ones), and the scores are those of these images."""
    done = run_main("evaluate", f"--workdir={run.cfg.run.workdir}",
                   "--dataset=synthetic", "--synthetic_num_train=4", "--synthetic_num_val=3",
                   f"--output_dir={tmp_path}/eval")
    assert done.returncode == 0, done.stderr[-2000:]
    with open(tmp_path / "eval" / "scores.json") as f:
        scores = json.load(f)
    assert scores["images"] == 3 and np.sum(scores["confusion"]) == 3 * 64 * 64


@pytest.mark.parametrize("args, message", [
    (["--saved_model=/no/such"], "not a SavedModel folder"),
    (["--workdir=/no/such"], "no such folder"),
    (["--split=test"], "has no test set"),
    (["--images=/tmp"], "--images and --masks go together"),
])
def test_evaluate_errors_are_one_line(run, args, message):
    if not any(a.startswith(("--workdir", "--saved_model")) for a in args):
        args = [f"--workdir={run.cfg.run.workdir}"] + args
    done = run_main("evaluate", *args)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in done.stderr


def test_predict_writes_id_pngs_and_overlays_and_skips_a_corrupt_file(run, exported, tmp_path):
    rng = np.random.default_rng(2)
    images = {"a.png": rng.integers(0, 256, (30, 44, 3), dtype=np.uint8),
              "b.png": rng.integers(0, 256, (30, 44, 3), dtype=np.uint8),
              "sub/c.jpg": rng.integers(0, 256, (21, 17, 3), dtype=np.uint8)}
    for name, image in images.items():
        os.makedirs(tmp_path / "in" / os.path.dirname(name), exist_ok=True)
        Image.fromarray(image).save(tmp_path / "in" / name, quality=95)
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG not really")
    done = run_main("predict", f"--saved_model={exported}",
                   f"--input={tmp_path}/in", f"--output={tmp_path}/out")
    assert done.returncode == 1, done.stderr[-2000:]
    skipped = [line for line in done.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 1 and "broken.png" in skipped[0]
    bars = [line for line in done.stderr.splitlines() if "predicted:" in line]
    assert "4/4 (100%), 1 skipped," in bars[-1], bars
    assert "wrote 3 label maps and overlays" in done.stdout and "1 file(s) skipped" in done.stdout
    served = tf.saved_model.load(exported).signatures["serving_default"]
    for name in images:
        # What the model saw: the decoded file (JPEG is lossy).
        decoded = np.asarray(Image.open(tmp_path / "in" / name).convert("RGB"))
        expected = served(images=tf.constant(decoded[None]))["labels"].numpy()[0]
        stem = os.path.splitext(name)[0]
        label_png = Image.open(tmp_path / "out" / "labels" / f"{stem}.png")
        assert label_png.mode == "P"
        np.testing.assert_array_equal(np.asarray(label_png), expected)
        overlay = Image.open(tmp_path / "out" / "overlays" / f"{stem}.png")
        assert overlay.size == (decoded.shape[1], decoded.shape[0]) and overlay.mode == "RGB"


def encoded_files(folder):
    """Photos-like test files in the formats the encoded signature takes: {name: path}."""
    rng = np.random.default_rng(5)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (45, 61, 3), dtype=np.uint8), (7, 7), 2)
    image = Image.fromarray(np.clip(smooth.astype(int) * 3 - 200, 0, 255).astype(np.uint8))
    files = {"420.jpg": dict(quality=75), "444.jpg": dict(quality=95, subsampling=0),
             "progressive.jpg": dict(quality=60, progressive=True), "grey.jpg": dict(quality=80),
             "plain.bmp": {}, "first_frame.gif": {}, "rgba.png": {}, "exif_rotated.jpg": {}}
    rotated = Image.Exif()
    rotated[0x0112] = 6         # "rotate 90 degrees to display": ignored everywhere, pixels as stored
    files["exif_rotated.jpg"] = dict(quality=90, exif=rotated)
    paths = {}
    for name, options in files.items():
        paths[name] = str(folder / name)
        picture = (image.convert("L") if name.startswith("grey") else
                   image.convert("RGBA") if name.startswith("rgba") else image)
        picture.save(paths[name], **options)
    return paths


def test_one_decoder_the_graphs_pixels_equal_pils_for_every_served_format(tmp_path):
    from semiseg_tf.data import image_files, records
    paths = encoded_files(tmp_path)
    fast_differs = False
    for name, path in paths.items():
        data = open(path, "rb").read()
        in_graph = records.decode_image(tf.constant(data)).numpy()
        np.testing.assert_array_equal(in_graph, image_files.read_image(path), err_msg=name)
        if name.endswith(".jpg"):
            fast = tf.io.decode_jpeg(data, channels=3).numpy()        # TensorFlow's default DCT
            fast_differs |= not np.array_equal(fast, in_graph)
    assert fast_differs          # the files are ones on which the choice of decoder shows


def test_served_labels_equal_predicts_for_jpeg_png_and_bmp_files_and_gif_is_refused(
        run, exported, tmp_path):
    (tmp_path / "in").mkdir()
    paths = encoded_files(tmp_path / "in")
    done = run_main("predict", f"--saved_model={exported}", f"--input={tmp_path}/in",
                    f"--output={tmp_path}/out")
    assert done.returncode == 0, done.stderr[-2000:]
    encoded = tf.saved_model.load(exported).signatures["encoded"]
    # A GIF's decoded size is its frame count times its screen, and the count is not in its header.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0\] \[is not a JPEG, PNG or BMP"):
        encoded(image_bytes=tf.constant([open(paths.pop("first_frame.gif"), "rb").read()]))
    for name, path in paths.items():
        result = encoded(image_bytes=tf.constant([open(path, "rb").read()]))
        served = tf.io.decode_png(result["label_png_bytes"][0]).numpy()[..., 0]
        predicted = np.asarray(Image.open(tmp_path / "out" / "labels"
                                          / (os.path.splitext(name)[0] + ".png")))
        np.testing.assert_array_equal(served, predicted, err_msg=name)


def test_predict_from_the_run_folder_equals_the_teacher(run, tmp_path):
    from semiseg_tf import predict
    image = np.random.default_rng(3).integers(0, 256, (26, 35, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "x.png")
    model = trained.RunModel(run.cfg.run.workdir)
    written, failed = predict.predict_files(model, [(str(tmp_path / "x.png"), "x.png")],
                                            str(tmp_path / "out"), batch_size=4,
                                            out=open(os.devnull, "w"))
    assert (written, failed) == (1, 0)
    labels = np.asarray(Image.open(tmp_path / "out" / "labels" / "x.png"))
    expected = teacher_probabilities(run, image[None])[0]
    top2 = np.sort(expected, -1)[..., -2:]
    assert np.all((labels == expected.argmax(-1)) | (top2[..., 1] - top2[..., 0] < 1e-5))


def test_commands_help_groups_flags_by_topic():
    done = command("-m", "semiseg_tf.train", "--help")
    assert done.returncode == 0                       # asking for help is not a failure
    assert "python -m semiseg_tf.train --flagfile=" in done.stdout
    titles = [line[:-1] for line in done.stdout.splitlines()
              if re.fullmatch(r"[A-Z][\w ,()']+:", line)]
    assert titles[:6] == ["The run folder", "Training", "Data", "Synthetic dataset",
                          "Labelled subset", "Augmentation"]
    assert {"Network", "Method", "Box masks (CutMix, Cutout)", "VAT", "Optimiser", "Inference",
            "Logging and checkpoints", "Distribution and speed"} <= set(titles)
    from semiseg_tf import config
    assert titles == [topic.title for topic in config.TRAINING_TOPICS]     # one per Config section
    flags_listed = re.findall(r"^  --(?:\[no\])?(\w+):", done.stdout, re.M)
    from semiseg_tf.options import method as method_flags
    # Each once, none missing (and the aliases, e.g. --pseudo_label_thresh for --conf_thresh).
    assert sorted(flags_listed) == sorted(config.FLAG_NAMES + tuple(method_flags.ALIASES))
    # The other commands' help is the same rendering of their own topics.
    from semiseg_tf import evaluate, options, predict, prepare
    for module, title in ((evaluate, "What to score"), (predict, "Input and output"),
                          (export, "Export")):
        text = options.help_text(module.COMMAND_TOPICS)
        assert f"\n\n{title}" in text and "--[no]flip:" in text, module.__name__
    assert "Preparation:" in options.help_text((prepare.TOPIC,))
    # prepare's example keeps its line continuation (a raw docstring).
    assert "--data_dir=/data/cityscapes \\\n      --prepared_dir" in prepare.__doc__


@pytest.mark.parametrize("name", ["train", "prepare", "evaluate", "predict", "export", "select"])
def test_command_help_does_not_load_tensorflow(name):
    # -X importtime lists every module the process imports, on stderr.
    done = command("-X", "importtime", "-m", f"semiseg_tf.{name}", "--help")
    assert done.returncode == 0 and f"python -m semiseg_tf.{name}" in done.stdout
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "absl.flags" in imported                   # the list is real
    # The training package's sections are imported on first use; none of them is at --help.
    assert not imported & {"tensorflow", "keras", "semiseg_tf.models", "semiseg_tf.training.trainer",
                           "semiseg_tf.training.builders", "semiseg_tf.semisup.mean_teacher"}


def test_flag_choices_named_for_help_are_the_implemented_ones():
    from semiseg_tf.options import method as method_flags
    from semiseg_tf.semisup import losses
    assert sorted(method_flags.CONSISTENCY_LOSSES) == sorted(losses.CONSISTENCY_LOSSES)
    from absl import flags
    from semiseg_tf import evaluate  # noqa: F401 (defines --absent_classes)
    assert tuple(flags.FLAGS["absent_classes"].parser.enum_values) == metrics.ABSENT_CLASSES


def test_compare_runs_help_and_long_class_names(run):
    done = command("-m", "semiseg_tf.compare_runs", "--help")
    assert done.returncode == 0 and "usage" in done.stdout.lower()
    done = command("-m", "semiseg_tf.compare_runs", run.cfg.run.workdir, run.cfg.run.workdir)
    assert done.returncode == 0, done.stderr
    assert "background" in done.stdout and "triangle" in done.stdout
