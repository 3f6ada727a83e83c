"""Files, folders, globs, requests and exports nobody checked: one test per case.

An image is refused from its header before it is decoded when it is over the pixel budget; predict
writes under --output only, never over an input and never one result over another; an export is
read for its model description only. docs/using.md, "Limits" and "Trusting an export", states the rules.
"""
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import types
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import PEAK_BYTES, TINY_RUN, one_error, parse_flags, run_main
from semiseg_tf import config, inference, serving, trained, training
from semiseg_tf.errors import DataError
from semiseg_tf.data import image_files
from semiseg_tf.options import limits

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_FLAGS = ["--synthetic_num_train=24", "--synthetic_num_val=6", "--synthetic_image_size=16"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished tiny run (tiny_unet, 6 classes)."""
    workdir = tmp_path_factory.mktemp("untrusted") / "run"
    cfg, text = parse_flags(**{**TINY_RUN, "workdir": str(workdir)})
    trainer = training.Trainer(cfg, text, out=open(os.devnull, "w"))
    trainer.run()
    return trainer


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exports") / "saved_models" / "run" / "1"
    return serving.export(trained.RunModel(run.cfg.run.workdir), str(folder), keras_file=False,
                          out=open(os.devnull, "w"))


def bomb_png(path, width, height):
    """A valid one-bit grey PNG of width x height zeros: tens of KB that decode to width x height x 3
    bytes (the IDAT stream is compressed row by row, never held whole)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    compressor, row, parts = zlib.compressobj(9), b"\0" * (1 + (width + 7) // 8), []
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0,
                                                                   0, 0, 0))
                + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def lying_jpeg(path, width, height):
    """An 8x8 JPEG whose frame header claims width x height: under a kilobyte."""
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path, format="JPEG", quality=50)
    data = bytearray(open(path, "rb").read())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    open(path, "wb").write(bytes(data))


def png(path, height, width, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")


def tree(folder):
    """{relative path: sha256 of the contents, or '-> target' for a link} of every file under it."""
    found = {}
    for root, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder)
            if os.path.islink(path):
                found[relative] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                found[relative] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return found


# --- the pixel budget of the served graph ------------------------------------------------------------

def test_a_png_bomb_and_a_lying_jpeg_are_refused_by_the_served_graph_before_decoding(
        exported, tmp_path):
    bomb_png(tmp_path / "bomb.png", 20000, 20000)
    lying_jpeg(tmp_path / "lie.jpg", 12000, 12000)
    png(tmp_path / "ok.png", 20, 30)
    assert os.path.getsize(tmp_path / "bomb.png") < 100_000
    assert os.path.getsize(tmp_path / "lie.jpg") < 1_000
    # A client's process that imports only TensorFlow, as a server would. A normal request first,
    # so that loading and the first call (which builds the graph) are in the peak before the
    # over-size ones: what they add is then theirs, and a decode of the bomb would add 1.2 GB.
    script = f"""
import tensorflow as tf
def peak():
    return {PEAK_BYTES}
encoded = tf.saved_model.load({exported!r}).signatures["encoded"]
def send(name):
    return encoded(image_bytes=tf.constant([open({str(tmp_path)!r} + "/" + name, "rb").read()]))
send("ok.png")
print("before", peak())
for name in ("bomb.png", "lie.jpg"):
    try:
        send(name)
        print(name, "served")
    except tf.errors.InvalidArgumentError as error:
        print(name, "refused:", " ".join(error.message.split("assertion failed:")[1].split()[:12]))
print("after", peak())
print("ok", send("ok.png")["labels"].shape)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["bomb.png"].startswith("refused: [image] [0] [is] [20000] [x] [20000]"), lines
    assert "[pixels, over the limit of] [40000000]" in lines["bomb.png"]
    assert lines["lie.jpg"].startswith("refused: [image] [0] [is] [12000] [x] [12000]"), lines
    assert lines["ok"] == "(1, 20, 30)"        # and the next normal request is served
    # Refused before any large allocation: the two add less than a tenth of the bomb's decode.
    assert int(lines["after"]) - int(lines["before"]) < 20000 * 20000 * 3 // 10, lines


def test_a_large_image_or_request_costs_at_most_the_bytes_a_pixel_the_budgets_follow_from(
        run, exported, tmp_path):
    """A 632-byte JPEG declaring 4000x4000 (16 Mpx: over --max_pass_pixels, within the image
    budget) through the encoded signature and through predict's own path, and a request of forty
    JPEGs declaring 1000x1000 to the encoded signature, each in a process that has served a small
    image first (predict: an image over --max_pass_pixels, whose tiles' graph it traces): each is
    served whole and adds to the peak no more than the bytes a pixel that the default budgets are
    derived from (options/limits.py; the image: decoded, by tiles, its label maps, overlay and PNG;
    the request: its labels padded and stacked). The network run over the whole image at once
    added 55 a pixel to the signature's."""
    lying_jpeg(tmp_path / "large.jpg", 4000, 4000)
    lying_jpeg(tmp_path / "one.jpg", 1000, 1000)
    lying_jpeg(tmp_path / "warm.jpg", 2100, 2100)
    (tmp_path / "pool").mkdir()
    png(tmp_path / "pool" / "small.png", 20, 30)
    # A process each: the first one's peak would hide the next's.
    serve = f"""
import sys
import tensorflow as tf
def peak():
    return {PEAK_BYTES}
encoded = tf.saved_model.load({exported!r}).signatures["encoded"]
def send(*names):
    return encoded(image_bytes=tf.constant([open({str(tmp_path)!r} + n, "rb").read()
                                            for n in names]))
send("/pool/small.png")
before = peak()
if sys.argv[1] == "image":
    print("encoded", send("/large.jpg")["labels"].shape, peak() - before)
    print("next", send("/pool/small.png")["labels"].shape)
else:
    print("request", send(*["/one.jpg"] * 40)["labels"].shape, peak() - before)
"""
    predict = f"""
from semiseg_tf import predict, trained
def peak():
    return {PEAK_BYTES}
folder = {str(tmp_path)!r}
model = trained.RunModel({run.cfg.run.workdir!r})
# Its tiles' graph traced on a smaller image over --max_pass_pixels: a cost paid once.
predict.predict_files(model, [(folder + "/warm.jpg", "warm.jpg")], folder + "/out", 1)
before = peak()
written, failed = predict.predict_files(model, [(folder + "/large.jpg", "large.jpg")],
                                        folder + "/out", 1)
print("predict", written, failed, peak() - before)
"""
    lines = {}
    for script, argument in ((serve, "image"), (serve, "request"), (predict, "")):
        done = subprocess.run([sys.executable, "-c", script, argument], capture_output=True,
                              text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert done.returncode == 0, done.stderr[-3000:]
        lines.update(line.split(" ", 1) for line in done.stdout.splitlines())
    shape, added = lines["encoded"].rsplit(" ", 1)
    assert shape == "(1, 4000, 4000)" and int(added) < limits.IMAGE_BYTES_PER_PIXEL * 4000 ** 2, lines
    assert lines["next"] == "(1, 20, 30)"
    shape, added = lines["request"].rsplit(" ", 1)
    assert shape == "(40, 1000, 1000)", lines
    assert int(added) < limits.REQUEST_BYTES_PER_PIXEL * 40 * 1000 ** 2, lines
    written, failed, added = lines["predict"].split()
    assert (written, failed) == ("1", "0"), lines
    assert int(added) < limits.IMAGE_BYTES_PER_PIXEL * 4000 ** 2, lines
    labels = np.asarray(Image.open(tmp_path / "out" / "labels" / "large.png"))
    assert labels.shape == (4000, 4000)


def test_serving_default_refuses_a_request_over_one_pass_before_its_network_runs(exported):
    """[4, 5000, 5000, 3] is within the image and request budgets (25 of 40 Mpx an image, 100 of
    100 Mpx a request) but over the 2048x2048 pixels of one pass of the network, which is how
    serving_default runs a request: refused by its check before the network runs (the request's
    own 300 MB and little more, where the pass would take gigabytes), and a request within one pass
    is served next."""
    script = f"""
import tensorflow as tf
def peak():
    return {PEAK_BYTES}
serve = tf.saved_model.load({exported!r}).signatures["serving_default"]
serve(images=tf.zeros([1, 20, 30, 3], tf.uint8))
before = peak()
request = tf.zeros([4, 5000, 5000, 3], tf.uint8)
try:
    serve(images=request)
except tf.errors.InvalidArgumentError as error:
    print("refused", peak() - before, " ".join(str(error).split()))
print("next", serve(images=tf.zeros([2, 1024, 1024, 3], tf.uint8))["labels"].shape)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    added, message = lines["refused"].split(" ", 1)
    assert int(added) < 4 * 5000 ** 2 * 3 + 200 * 2 ** 20, lines
    assert "[the request:] [4] [images of] [5000] [x] [5000] [pixels, over the] [4194304]" in message
    assert lines["next"] == "(2, 1024, 1024)"


@pytest.fixture(scope="module")
def one_pass_of_600(run, tmp_path_factory):
    """The run exported with --max_pass_pixels=600: its serving_default takes 600 pixels a call."""
    folder = tmp_path_factory.mktemp("exports") / "small_pass" / "1"
    options = inference.InferenceOptions(max_pass_pixels=600)
    return serving.export(trained.RunModel(run.cfg.run.workdir, options=options), str(folder),
                          keras_file=False, out=open(os.devnull, "w"))


def test_a_saved_model_predicts_a_batch_in_calls_within_one_pass_and_names_an_image_over_it(
        run, one_pass_of_600, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), np.uint8)
    served = trained.SavedModel(one_pass_of_600)
    calls = []
    serve = served.serve
    served.serve = lambda images: calls.append(images.shape) or serve(images=images)
    labels = served.predict(images)["labels"]
    assert calls == [(2, 16, 16, 3), (2, 16, 16, 3), (1, 16, 16, 3)]     # 600 // 256 = 2 a call
    expected = trained.RunModel(run.cfg.run.workdir).predict(images)["labels"]
    np.testing.assert_array_equal(labels, expected)
    with pytest.raises(DataError, match="25x25 pixels: over the 600 of one pass of the network, "
                                        "which .* takes"):
        served.predict(np.zeros((1, 25, 25, 3), np.uint8))
    (tmp_path / "in").mkdir()
    png(tmp_path / "in" / "large.png", 25, 25)
    png(tmp_path / "in" / "small.png", 16, 16)
    done = run_main("predict", f"--saved_model={one_pass_of_600}", f"--input={tmp_path}/in",
                    f"--output={tmp_path}/out")
    skipped = [line for line in done.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 1 and "large.png: 25x25 pixels: over the 600" in skipped[0], done.stderr
    assert "wrote 1 label maps" in done.stdout


@pytest.fixture(scope="module")
def small_budget(run):
    """The run's segmenter served with budgets of 10,000 pixels an image and 20,000 a request."""
    return serving.ServingModule(trained.RunModel(run.cfg.run.workdir).segmenter, {},
                                 max_image_pixels=10_000, max_request_pixels=20_000)


def encode(pixels):
    return tf.io.encode_png(tf.constant(pixels)).numpy()


def test_a_request_is_refused_when_padding_to_its_largest_image_takes_it_over_budget(small_budget):
    large, tiny = encode(np.zeros((100, 100, 3), np.uint8)), encode(np.zeros((1, 1, 3), np.uint8))
    served = small_budget.serve_encoded(tf.constant([large, tiny]))
    assert served["labels"].shape == (2, 100, 100)          # 2 x 100 x 100: the budget exactly
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"\[the request:\] \[3\] \[images of\] \[100\] \[x\] \[100\]"):
        small_budget.serve_encoded(tf.constant([large, tiny, tiny]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[image\] \[1\] \[is\] \[101\]"):
        small_budget.serve_encoded(tf.constant([tiny, encode(np.zeros((100, 101, 3), np.uint8))]))


def test_serving_default_refuses_other_channel_counts_and_images_over_budget(exported,
                                                                           small_budget):
    # A loaded signature does not hold its inputs to its shapes; the graph checks them.
    served = tf.saved_model.load(exported).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images: \[N, H, W, 3\] expected"):
        served(images=tf.zeros([1, 8, 8, 1], tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"over the limit of\] \[10000\]"):
        small_budget.serve(tf.zeros([1, 101, 100, 3], tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"over the limit of\] \[20000\]"):
        small_budget.serve(tf.zeros([3, 100, 100, 3], tf.uint8))
    assert small_budget.serve(tf.zeros([2, 100, 100, 3], tf.uint8))["labels"].shape == (2, 100, 100)


def test_an_empty_request_gets_empty_outputs_in_both_signatures(small_budget):
    served = small_budget.serve_encoded(tf.constant([], tf.string))
    assert served["labels"].shape == (0, 0, 0) and served["label_png_bytes"].shape == (0,)
    assert served["image_size"].shape == (0, 2)
    served = small_budget.serve(tf.zeros([0, 16, 24, 3], tf.uint8))
    assert served["labels"].shape == (0, 16, 24) and served["labels"].dtype == tf.int32
    assert served["probabilities"].shape == (0, 16, 24, 6)


def test_sizes_read_from_headers_equal_pils(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for name, options in {"a.png": {}, "a.jpg": dict(quality=90),
                          "p.jpg": dict(quality=70, progressive=True), "a.bmp": {}}.items():
        Image.fromarray(image).save(tmp_path / name, **options)
        size = serving.encoded_image_size(tf.constant(open(tmp_path / name, "rb").read()), 0)
        assert tuple(size.numpy()) == (37, 53), name
    with pytest.raises(tf.errors.InvalidArgumentError, match="is not a JPEG, PNG or BMP"):
        serving.encoded_image_size(tf.constant(b"GIF89a" + b"\0" * 40), 0)


# --- the pixel budget of predict -----------------------------------------------------------------

def test_predict_skips_a_png_bomb_and_a_lying_jpeg_with_one_line_each(run, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    bomb_png(photos / "bomb.png", 20000, 20000)
    lying_jpeg(photos / "lie.jpg", 12000, 12000)
    png(photos / "ok.png", 20, 24)
    done = run_main("predict", f"--workdir={run.cfg.run.workdir}", f"--input={photos}",
                    f"--output={tmp_path}/out")
    assert done.returncode == 1, done.stderr[-2000:]
    skipped = [line for line in done.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 2 and all("over the limit of 40,000,000" in s for s in skipped)
    assert sorted(s.split(": ")[1].split("/")[-1] for s in skipped) == ["bomb.png", "lie.jpg"]
    # Both name the size their header declares, whether Pillow or the budget refused it first.
    assert sorted(s.split(": ")[2].split()[0] for s in skipped) == ["12000x12000", "20000x20000"]
    assert "wrote 1 label maps and overlays" in done.stdout and "2 file(s) skipped" in done.stdout


def test_a_pixel_budget_of_zero_is_one_line(run, tmp_path):
    done = run_main("predict", f"--workdir={run.cfg.run.workdir}", f"--input={tmp_path}",
                    f"--output={tmp_path}/out", "--max_image_pixels=0")
    assert done.returncode == 2
    one_error(done, "--max_image_pixels=0")


# --- where predict reads and writes ----------------------------------------------------------------

def test_a_glob_that_goes_up_after_a_wildcard_is_refused_and_nothing_is_written(run, tmp_path):
    photos = tmp_path / "photos"
    (photos / "deep" / "a" / "b").mkdir(parents=True)
    png(photos / "victim.png", 12, 12)
    png(photos / "deep" / "a" / "b" / "x.png", 12, 12)
    before = tree(tmp_path)
    done = run_main("predict", f"--workdir={run.cfg.run.workdir}",
                    f"--input={photos}/deep/a/*/../../../*.png", f"--output={photos}/masks")
    assert done.returncode == 2
    one_error(done, "'..' after a wildcard")
    assert tree(tmp_path) == before


def test_inputs_of_one_name_with_different_extensions_keep_distinct_outputs(run, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate(["x.png", "x.jpg", "x.PNG", "y.png"]):
        image = np.full((12, 12, 3), 40 * i, np.uint8)
        Image.fromarray(image).save(photos / name, format="JPEG" if name.endswith("jpg") else "PNG")
    done = run_main("predict", f"--workdir={run.cfg.run.workdir}", f"--input={photos}",
                    f"--output={tmp_path}/out", "--nooverlays")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrote 4 label maps" in done.stdout
    # A name's extension is kept where names would clash, and only there.
    assert sorted(os.listdir(tmp_path / "out" / "labels")) == [
        "x.PNG.png", "x.jpg.png", "x.png.png", "y.png"]


def test_symlink_loops_are_cut_and_each_file_is_listed_once(tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for i in range(7):
        png(photos / ("sub" if i % 2 else ".") / f"{i}.png", 4, 4)
    os.symlink(".", photos / "loop")
    os.symlink("..", photos / "sub" / "up")
    os.symlink("sub/1.png", photos / "again.png")          # the same file under another name
    for pattern in (str(photos), f"{photos}/**/*.png", f"{photos}/**"):
        images = image_files.list_images(pattern)
        assert len(images) == 7, (pattern, images)
        assert len({os.path.realpath(p) for p, _ in images}) == 7


def test_an_output_folder_inside_the_input_folder_is_not_read_back(run, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    png(photos / "a.png", 12, 12)
    png(photos / "b.png", 12, 16)
    for _ in range(2):
        done = run_main("predict", f"--workdir={run.cfg.run.workdir}", f"--input={photos}",
                        f"--output={photos}/masks")
        assert done.returncode == 0, done.stderr[-2000:]
        assert "wrote 2 label maps and overlays" in done.stdout


def test_an_output_that_would_overwrite_an_input_is_an_error_before_anything_is_written(
        run, tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    png(photos / "a.png", 12, 12)
    png(photos / "b.png", 12, 12)
    (out / "labels").mkdir(parents=True)
    os.symlink(photos / "b.png", out / "labels" / "b.png")   # b's label map would land on b
    before = tree(tmp_path)
    done = run_main("predict", f"--workdir={run.cfg.run.workdir}", f"--input={photos}",
                    f"--output={out}")
    assert done.returncode == 2
    one_error(done, "would overwrite the input", "b.png")
    assert tree(tmp_path) == before


def test_a_broken_link_is_counted_and_named_and_a_file_named_dot_dot_png_is_read(run, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    png(photos / "ok.png", 12, 12)
    png(photos / "..png", 12, 12)
    os.symlink(photos / "gone.png", photos / "broken.png")
    done = run_main("predict", f"--workdir={run.cfg.run.workdir}", f"--input={photos}",
                    f"--output={tmp_path}/out", "--nooverlays")
    assert done.returncode == 1
    assert f"skipped: {photos}/broken.png: a broken symbolic link" in done.stderr
    assert "wrote 2 label maps" in done.stdout and "1 file(s) skipped" in done.stdout
    assert sorted(os.listdir(tmp_path / "out" / "labels")) == ["..png", "ok.png"]


def test_output_names_never_leave_the_output_folder():
    with pytest.raises(config.ConfigError, match="leaves it"):
        image_files.output_names([("/x/a.png", "../a.png")])
    with pytest.raises(config.ConfigError, match="leaves it"):
        image_files.output_names([("/x/a.png", "/abs/a.png")])


# --- what is read from an export and a run folder -----------------------------------------------

def copy_export(exported, tmp_path):
    copy = tmp_path / "saved_models" / "copy" / "1"
    shutil.copytree(exported, copy)
    return copy


def test_evaluate_of_an_export_reads_neither_its_data_flags_nor_a_nested_flagfile(exported,
                                                                                  tmp_path):
    copy = copy_export(exported, tmp_path)
    (tmp_path / "secret.flags").write_text("--dataset=cityscapes\n")
    with open(copy / "assets" / "flags.txt", "a") as f:
        f.write(f"--prepared_dir={tmp_path}/written_here\n--data_dir={tmp_path}/elsewhere\n"
                f"--flagfile={tmp_path}/secret.flags\n")
    before = tree(tmp_path)
    done = run_main("evaluate", f"--saved_model={copy}", *DATA_FLAGS,
                    f"--output_dir={tmp_path}/scores")
    assert done.returncode == 0, done.stderr[-2000:]
    after = tree(tmp_path)
    assert {k for k in after if k not in before} == {"scores/scores.json", "scores/confusion.png"}
    assert not os.path.exists(tmp_path / "written_here")


def test_a_run_flags_file_naming_another_flagfile_is_one_line(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run.cfg.run.workdir, copy)
    with open(copy / "flags.txt", "a") as f:
        f.write("--flagfile=/etc/hostname\n")
    done = run_main("evaluate", f"--workdir={copy}", f"--output_dir={tmp_path}/scores")
    assert done.returncode == 2
    one_error(done, "flags.txt", "no --flagfile")


@pytest.mark.parametrize("field,value,message", [
    ("palette", [[300, 0, 0]] * 6, "palette="),
    ("class_names", ["c0", "c1", "c2", "c3", "c4", "c5", "c6"], "its network has 6 outputs"),
    ("input", {"mean": [0, 0], "std": [1, 1, 1]}, "input.mean="),
])
def test_an_export_with_a_wrong_model_description_is_one_line(exported, tmp_path, field, value,
                                                              message):
    import json
    copy = copy_export(exported, tmp_path)
    path = copy / "assets" / "run.json"
    info = json.loads(path.read_text())
    info[field] = value
    if field == "class_names":
        info["palette"] = info["palette"] + [[1, 2, 3]]
    path.write_text(json.dumps(info))
    png(tmp_path / "a.png", 8, 8)
    done = run_main("predict", f"--saved_model={copy}", f"--input={tmp_path}/a.png",
                    f"--output={tmp_path}/out")
    assert done.returncode == 2
    one_error(done, str(copy), message)


# --- concurrency and failures --------------------------------------------------------------------

def test_an_export_whose_version_is_taken_meanwhile_takes_the_next_or_says_so(tmp_path):
    taken = tmp_path / "saved_models" / "run" / "1"
    taken.mkdir(parents=True)
    (taken / "saved_model.pb").write_bytes(b"another export's")
    model = types.SimpleNamespace(workdir=str(tmp_path / "run"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "saved_model.pb").write_bytes(b"mine")
    with pytest.raises(config.ConfigError, match="another export wrote it"):
        serving._rename_into_place(str(tmp_path / "mine"), str(taken), chosen=str(taken),
                                   model=model)
    moved = serving._rename_into_place(str(tmp_path / "mine"), str(taken), chosen=None,
                                       model=model)
    assert moved == str(tmp_path / "saved_models" / "run" / "2")
    assert (taken / "saved_model.pb").read_bytes() == b"another export's"


def test_an_export_that_fails_to_write_leaves_nothing(run, tmp_path, monkeypatch):
    import tempfile
    model = trained.RunModel(run.cfg.run.workdir)

    def full_disk(path, *args, **kwargs):
        # Keras writes the .keras file through a temporary file of its own first.
        with tempfile.NamedTemporaryFile(delete=False) as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(model.network, "save", full_disk)
    # A temporary folder of this test's own: other processes write to the machine's at any time.
    system_temporary = tmp_path / "system_temporary"
    system_temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_temporary))
    with pytest.raises(OSError, match="No space left"):
        serving.export(model, str(tmp_path / "saved_models" / "run" / "1"))
    assert os.listdir(tmp_path / "saved_models" / "run") == []
    assert os.listdir(system_temporary) == []


def test_a_checkpoint_removed_while_it_is_read_is_replaced_by_the_newest(run, tmp_path, monkeypatch):
    copy = tmp_path / "run"
    shutil.copytree(run.cfg.run.workdir, copy)
    folder = copy / "checkpoints"
    newest, older = (str(folder / f"ckpt-{step}") for step in (4, 2))
    assert os.path.exists(older + ".index")
    calls = []

    def rotating(workdir):
        # The first reader finds ckpt-4, which a training then removes; after that ckpt-2 is newest.
        calls.append(workdir)
        if len(calls) == 1:
            for name in os.listdir(folder):
                if name.startswith("ckpt-4."):
                    os.remove(folder / name)
            return newest
        return older
    monkeypatch.setattr(trained, "latest_checkpoint", rotating)
    model = trained.RunModel(str(copy))
    assert (model.checkpoint, model.step, len(calls)) == (older, 2, 2)
    monkeypatch.setattr(trained, "latest_checkpoint", lambda workdir: newest)
    with pytest.raises(config.ConfigError, match="removed while it was being read, 3 times"):
        trained.RunModel(str(copy))


def test_the_budgets_flags_default_to_the_librarys_defaults():
    from absl import flags

    from semiseg_tf import export  # noqa: F401  (defines --max_request_pixels)
    from semiseg_tf.data import native
    from semiseg_tf.options import limits
    assert limits.DEFAULT_MAX_IMAGE_PIXELS == native.DEFAULT_MAX_IMAGE_PIXELS
    assert flags.FLAGS["max_image_pixels"].default == native.DEFAULT_MAX_IMAGE_PIXELS
    assert flags.FLAGS["max_request_pixels"].default == serving.DEFAULT_MAX_REQUEST_PIXELS
    assert flags.FLAGS["min_agreement"].default == serving.MIN_AGREEMENT


def test_prepare_and_train_stop_at_an_image_over_the_budget_naming_it(tmp_path):
    import dataset_fixtures as fx
    fx.write_folder(tmp_path / "data", num_classes=3)
    lying_jpeg(tmp_path / "data" / "images" / "img_004.png", 12000, 12000)
    done = run_main("prepare", "--dataset=folder", f"--data_dir={tmp_path}/data",
                    f"--prepared_dir={tmp_path}/prepared")
    assert done.returncode == 2
    one_error(done, "img_004.png: 12000x12000 pixels, over the limit of 40,000,000")
    assert not os.path.exists(tmp_path / "prepared")
    done = run_main("train", "--dataset=folder", f"--data_dir={tmp_path}/data",
                    f"--prepared_dir={tmp_path}/prepared", f"--workdir={tmp_path}/run",
                    "--arch=tiny_unet", "--crop_size=16,16", "--train_steps=1", "--n_sup=4")
    assert done.returncode == 2
    one_error(done, "img_004.png: 12000x12000 pixels, over the limit of 40,000,000")
    # A larger budget reads it (and finds what is really wrong: an 8x8 image claiming more).
    done = run_main("prepare", "--dataset=folder", f"--data_dir={tmp_path}/data",
                    f"--prepared_dir={tmp_path}/prepared", "--max_image_pixels=200000000")
    assert done.returncode == 2
    assert "over the limit" not in one_error(done, "img_004.png")
