"""The bad-input corpus: what users and machines do to runs, one test per case.

Each case checks the exit status (through the command where a user would meet it), that the message
is one line naming the culprit, and that nothing half-written is left. docs/running.md, "When
things go wrong", lists the cases.
"""
import glob
import io
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import dataset_fixtures as fx
from conftest import TINY_RUN, one_error, parse_flags, run_main
from semiseg_tf import config, training
from semiseg_tf.data import prepared
from semiseg_tf.data.native import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_ARGS = [f"--{name}={value}" for name, value in TINY_RUN.items()]


def train(*args):
    """`python -m semiseg_tf.train` on the tiny run with `args`, in this process (`run_main`)."""
    return run_main("train", *TINY_ARGS, *args)


def train_process(*args, timeout=300):
    """The same in a process of its own; the finished process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "semiseg_tf.train", *TINY_ARGS, *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


def leftovers(folder):
    """Files a failed write could leave: temporary files and half-written checkpoints."""
    return [p for p in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
            if ".tmp" in os.path.basename(p) or "_temp" in os.path.basename(p)]


def run_in_process(workdir, out=None, **overrides):
    cfg, text = parse_flags(**{**TINY_RUN, "workdir": str(workdir), **overrides})
    trainer = training.Trainer(cfg, text, out=out or open(os.devnull, "w"))
    return trainer, trainer.run()


def weights(trainer):
    return [w.numpy() for w in trainer.model.student.weights + trainer.model.teacher.weights]


def checkpoint_finite(path):
    reader = tf.train.load_checkpoint(path)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.isfinite(value).all():
            return False
    return True


# --- non-finite losses ---------------------------------------------------------------------------

def test_a_diverging_run_stops_non_zero_and_saves_nothing_non_finite(tmp_path):
    done = train(f"--workdir={tmp_path}/run", "--learning_rate=1e8", "--train_steps=40",
                 "--checkpoint_every=1", "--keep_checkpoints=50", "--eval_every=40")
    assert done.returncode == 3, done.stderr[-3000:]
    line = one_error(done, "(nan or inf)", "the run stops without saving")
    assert line.startswith("error: step ")
    saved = glob.glob(str(tmp_path / "run" / "checkpoints" / "ckpt-*.index"))
    assert all(checkpoint_finite(p[:-len(".index")]) for p in saved)
    assert not os.path.exists(tmp_path / "run" / "metrics.json")


def test_a_non_finite_step_is_skipped_without_changing_anything(tmp_path):
    """--on_nonfinite=skip: a labelled batch with a nan pixel makes the losses nan; the step leaves
    weights, batch-norm statistics, the optimiser and the teacher as they were, and is counted."""
    cfg, text = parse_flags(**{**TINY_RUN, "workdir": str(tmp_path / "run"),
                               "on_nonfinite": "skip"})
    trainer = training.Trainer(cfg, text, out=open(os.devnull, "w"))
    model = trainer.model
    batch = next(iter(trainer.pipeline.train_dataset(0)))
    before = [v.numpy() for v in model.student.variables + model.teacher.variables]
    iterations = int(model.optimizer.iterations.numpy())
    poisoned = dict(batch, labelled=dict(batch["labelled"]))
    poisoned["labelled"]["image"] = tf.tensor_scatter_nd_update(
        batch["labelled"]["image"], [[0, 3, 3, 0]], [float("nan")])
    logs = tf.function(model.train_step)(poisoned, tf.constant(7, tf.int64))
    assert float(logs["nonfinite"]) == 1.0
    after = [v.numpy() for v in model.student.variables + model.teacher.variables]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert int(model.optimizer.iterations.numpy()) == iterations
    assert int(model.nonfinite_steps.numpy()) == 1 and int(model.first_nonfinite_step.numpy()) == 7
    # A finite batch trains as usual.
    tf.function(model.train_step)(batch, tf.constant(8, tf.int64))
    assert int(model.optimizer.iterations.numpy()) == iterations + 1
    assert int(model.nonfinite_steps.numpy()) == 1


def test_two_replicas_skip_a_step_that_is_non_finite_on_one_of_them(tmp_path):
    """Under MirroredStrategy a nan on one replica makes every replica skip (its own process: the
    logical devices must be set before TensorFlow starts)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, os.path.join(REPO, "tests", "mirrored_nonfinite.py"),
                           str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "replicas 2: skipped 1, unchanged, then trained"


# --- checkpoints ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 6-step tiny run (checkpoints 2, 4 and 6 kept): (its folder, final weights,
    result). Tests copy the folder before changing it."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    trainer, result = run_in_process(workdir, train_steps=6, keep_checkpoints=3)
    return workdir, weights(trainer), result


def copy_of(finished, tmp_path):
    shutil.copytree(finished[0], tmp_path / "run")
    return tmp_path / "run"


def damage(path, how):
    data = glob.glob(path + ".data-*")[0]
    if how == "truncated":
        with open(data, "r+b") as f:
            f.truncate(os.path.getsize(data) // 2)
    elif how == "byte_flipped":
        content = bytearray(open(data, "rb").read())
        for position in (len(content) // 3, len(content) // 2):
            content[position] ^= 0xFF
        open(data, "wb").write(bytes(content))
    else:
        open(path + ".index", "w").close()


@pytest.mark.parametrize("how", ["truncated", "byte_flipped", "empty_index"])
def test_a_damaged_latest_checkpoint_resumes_from_the_previous_one(tmp_path, finished, how):
    copy_of(finished, tmp_path)
    damage(str(tmp_path / "run" / "checkpoints" / "ckpt-6"), how)
    out = io.StringIO()
    trainer, result = run_in_process(tmp_path / "run", out=out, train_steps=6, keep_checkpoints=3)
    lines = out.getvalue().splitlines()
    assert any(line.startswith("warning: ") and "ckpt-6 cannot be read" in line for line in lines)
    assert any(line.startswith("resuming from") and line.endswith("ckpt-4 (step 4)") for line in lines)
    for a, b in zip(weights(trainer), finished[1]):
        np.testing.assert_array_equal(a, b)
    assert result.miou == finished[2].miou
    folder = tmp_path / "run" / "checkpoints"
    assert glob.glob(str(folder / "ckpt-6.*.unreadable"))          # set aside for inspection
    assert tf.train.latest_checkpoint(str(folder)).endswith("ckpt-6") and checkpoint_finite(
        tf.train.latest_checkpoint(str(folder)))                   # written anew, readable


def test_stop_at_step_exits_zero_and_no_readable_checkpoint_is_one_line(tmp_path):
    done = train(f"--workdir={tmp_path}/run", "--stop_at_step=2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "paused at step 2 of 4; run the same command without --stop_at_step" in done.stdout
    damage(str(tmp_path / "run" / "checkpoints" / "ckpt-2"), "empty_index")
    with pytest.raises(config.ConfigError, match=r"^--workdir=.*: none of its 1 checkpoint\(s\) can "
                       r"be read \(the newest, .*ckpt-2, as said above\); start a new --workdir$"):
        run_in_process(tmp_path / "run")


def test_a_checkpoint_that_cannot_be_written_leaves_the_previous_one_latest(tmp_path, finished):
    copy_of(finished, tmp_path)
    cfg, text = parse_flags(**{**TINY_RUN, "workdir": str(tmp_path / "run"), "train_steps": 8,
                               "keep_checkpoints": 3})
    trainer = training.Trainer(cfg, text, out=open(os.devnull, "w"))

    def full_disk(checkpoint_number):
        # What a full disk leaves: a temporary folder and a partial data file, then the error.
        folder = trainer.checkpoints.manager.directory
        os.makedirs(os.path.join(folder, f"ckpt-{checkpoint_number}_temp"), exist_ok=True)
        open(os.path.join(folder, f"ckpt-{checkpoint_number}.data-00000-of-00001"), "wb").close()
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
    trainer.checkpoints.manager.save = full_disk
    with pytest.raises(training.RunFolderError, match=r"cannot write checkpoint ckpt-8 \(No space "
                       r"left on device\); the latest checkpoint is still .*ckpt-6$"):
        trainer.run()
    assert not glob.glob(str(tmp_path / "run" / "checkpoints" / "ckpt-8*"))
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-6")


@pytest.fixture
def tmpfs(tmp_path):
    """A mount point for a small tmpfs (mounting needs root; skipped where it is not allowed)."""
    mounts = []

    def mount(size, read_only=False):
        point = tmp_path / f"mnt{len(mounts)}"
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()[:80]})")
        mounts.append(point)
        return point
    yield mount
    for point in mounts:
        # Lazily: files this process still holds open there (TensorBoard writers) keep it busy.
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_a_read_only_workdir_is_one_line(tmpfs):
    point = tmpfs("1m", read_only=True)
    done = train(f"--workdir={point}/run")
    assert done.returncode == 2
    one_error(done, f"--workdir={point}/run: cannot be written", "Read-only file system")


def test_a_workdir_that_cannot_be_created_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    done = train(f"--workdir={tmp_path}/a_file/run")
    assert done.returncode == 2
    one_error(done, f"--workdir={tmp_path}/a_file/run: cannot be written")


def test_a_full_disk_names_the_path_and_leaves_the_previous_checkpoint(tmpfs):
    point = tmpfs("4m")
    workdir = point / "run"
    run_in_process(workdir, stop_at_step=2, image_every=0, eval_every=10)
    # Fill the disk but for a few kilobytes: the next checkpoint cannot fit.
    free = shutil.disk_usage(point).free
    with open(point / "filler", "wb") as f:
        f.write(b"\0" * max(free - 8 * 1024, 0))
    with pytest.raises((OSError, training.RunFolderError)) as error:
        run_in_process(workdir, image_every=0, eval_every=10)
    assert str(workdir) in (getattr(error.value, "filename", None) or str(error.value))
    assert tf.train.latest_checkpoint(str(workdir / "checkpoints")).endswith("ckpt-2")
    assert not leftovers(str(workdir)) and not glob.glob(str(workdir / "checkpoints" / "ckpt-4*"))


# --- one run per folder, and what may change on resume -------------------------------------------

def test_a_second_training_in_a_locked_workdir_stops_at_once(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from semiseg_tf import training; "
         f"training.lock_workdir({str(workdir)!r}); print('locked', flush=True); time.sleep(120)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.perf_counter()
        done = train(f"--workdir={workdir}")
        assert done.returncode == 2
        one_error(done, "another training is running in it", f"process {holder.pid}")
        assert time.perf_counter() - start < 60       # before any data or network was built
        assert not os.path.exists(workdir / "flags.txt")
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the lock with the process: the folder can be taken now.
    training.lock_workdir(str(workdir))
    training.release_workdir(str(workdir))


def test_a_rerun_after_bad_data_trains_and_the_data_and_run_may_move(tmp_path):
    """A bad mask: one line, nothing written; the corrected command trains in the same folder; then
    the data and the run folder move, the device layout and logging change, and the run resumes,
    saying what changed."""
    fx.write_folder(tmp_path / "data", num_classes=3)
    (tmp_path / "data" / "classes.txt").write_text("a\nb\nc\n")
    good = tmp_path / "data" / "masks" / "img_001.png"
    shutil.copy(good, tmp_path / "good.png")
    Image.fromarray(np.full((24, 32), 9, np.uint8)).save(good)
    common = dict(dataset="folder", n_sup=2, crop_size="16,16")
    with pytest.raises(DataError, match=r"img_001.png: label values 9 are outside the 3 classes"):
        run_in_process(tmp_path / "run", data_dir=str(tmp_path / "data"),
                       prepared_dir=str(tmp_path / "p1"), **common)
    assert not os.path.exists(tmp_path / "run" / "flags.txt")
    shutil.copy(tmp_path / "good.png", good)
    run_in_process(tmp_path / "run", data_dir=str(tmp_path / "data"),
                   prepared_dir=str(tmp_path / "p1"), stop_at_step=2, image_every=0, **common)
    shutil.move(tmp_path / "data", tmp_path / "moved")
    shutil.move(tmp_path / "run", tmp_path / "moved_run")
    out = io.StringIO()
    _, result = run_in_process(tmp_path / "moved_run", out=out, data_dir=str(tmp_path / "moved"),
                               prepared_dir=str(tmp_path / "p2"), strategy="mirrored",
                               log_every=2, image_every=0, **common)
    text = out.getvalue()
    for name in ("data_dir", "prepared_dir", "strategy", "log_every"):
        assert f"note: --{name} changed" in text, text
    assert "resuming from" in text and result.finished and 0 <= result.miou <= 1


def test_a_longer_train_steps_continues_exactly_and_a_length_dependent_schedule_refuses(
        tmp_path, finished):
    run_in_process(tmp_path / "run", train_steps=4)                       # finished at 4
    out = io.StringIO()
    longer, result = run_in_process(tmp_path / "run", out=out, train_steps=6)
    assert "note: --train_steps changed (--train_steps=4 -> --train_steps=6)" in out.getvalue()
    for a, b in zip(weights(longer), finished[1]):                        # the 6-step run's
        np.testing.assert_array_equal(a, b)
    assert result.step == 6
    # The same finished run, had it been trained with a poly schedule.
    poly = tmp_path / "poly"
    shutil.copytree(finished[0], poly)
    flags_file = poly / "flags.txt"
    flags_file.write_text(flags_file.read_text().replace("--lr_sched=none", "--lr_sched=poly"))
    with pytest.raises(config.ConfigError, match=r"--train_steps: --train_steps=6 -> "
                       r"--train_steps=8 .*--lr_sched=poly, whose learning rate"):
        run_in_process(poly, train_steps=8, lr_sched="poly", keep_checkpoints=3)


# --- data ----------------------------------------------------------------------------------------

def folder_with_masks(root, values):
    fx.write_folder(root, num_classes=3)
    label = np.zeros((24, 32), np.uint8)
    for k, value in enumerate(values):
        label[k, :] = value
    Image.fromarray(label).save(root / "masks" / "img_000.png")


def open_folder(root, prepared_dir, out=None, **kwargs):
    return prepared.build_prepared_source("folder", str(root), str(prepared_dir),
                                          out=out or io.StringIO(), **{"n_sup": 2, **kwargs})


def binary_folder(root, foreground):
    """A folder dataset whose masks (training and validation) hold 0 and `foreground` only."""
    fx.write_folder(root, num_classes=2)
    for path in glob.glob(str(root / "**" / "masks" / "*.png"), recursive=True):
        label = np.asarray(Image.open(path))
        Image.fromarray((label * foreground).astype(np.uint8)).save(path)


def test_black_and_white_0_255_masks_are_refused_naming_mask_values(tmp_path):
    binary_folder(tmp_path / "data", 255)
    done = train(f"--workdir={tmp_path}/run", "--dataset=folder", f"--data_dir={tmp_path}/data",
                 f"--prepared_dir={tmp_path}/prepared", "--n_sup=2")
    assert done.returncode == 2, done.stderr[-3000:]
    one_error(done, "the masks hold the values 0 and 255 only, and 255 means ignore",
              "add --mask_values=0,255")
    assert not (tmp_path / "run" / "checkpoints").exists()
    # The prepare command says the same, and takes the flag.
    prepare = ["--dataset=folder", f"--data_dir={tmp_path}/data", f"--prepared_dir={tmp_path}/prepared"]
    done = run_main("prepare", *prepare)
    assert done.returncode == 2
    one_error(done, "add --mask_values=0,255")
    done = run_main("prepare", *prepare, "--mask_values=0,255")
    assert done.returncode == 0 and "folder: 2 classes" in done.stdout, done.stderr[-2000:]


def test_mask_values_0_255_read_black_and_white_masks_as_two_classes(tmp_path):
    binary_folder(tmp_path / "data", 255)
    source = open_folder(tmp_path / "data", tmp_path / "prepared", mask_values=(0, 255))
    assert source.num_classes == 2
    _, label = source.read_train(0)
    raw = np.asarray(Image.open(tmp_path / "data" / "masks" / "img_000.png"))
    np.testing.assert_array_equal(label.numpy(), (raw == 255).astype(np.uint8))
    # A value the flag does not list is named with its file.
    Image.fromarray(np.full((24, 32), 7, np.uint8)).save(tmp_path / "data" / "masks" / "img_001.png")
    with pytest.raises(DataError, match=r"img_001.png: mask values 7 are not in "
                                        r"--mask_values=0,255$"):
        open_folder(tmp_path / "data", tmp_path / "prepared2", mask_values=(0, 255))


def test_masks_of_0_and_one_other_value_are_refused_naming_mask_values(tmp_path):
    binary_folder(tmp_path / "data", 128)
    with pytest.raises(DataError, match=r"masks: the masks hold only the values 0 and 128, read as "
                                        r"class ids they would make 129 classes. For two classes "
                                        r"add --mask_values=0,128"):
        open_folder(tmp_path / "data", tmp_path / "prepared")
    assert open_folder(tmp_path / "data", tmp_path / "prepared",
                       mask_values=(0, 128)).num_classes == 2


def test_0_1_masks_are_two_classes_as_they_are(tmp_path):
    binary_folder(tmp_path / "data", 1)
    assert open_folder(tmp_path / "data", tmp_path / "prepared").num_classes == 2


def test_a_dataset_with_fewer_than_two_classes_is_an_error(tmp_path):
    binary_folder(tmp_path / "data", 0)                          # every pixel 0
    with pytest.raises(DataError, match=r"every labelled pixel of the masks is class 0 \(value 0\); "
                                        r"segmentation needs pixels of 2 or more classes"):
        open_folder(tmp_path / "data", tmp_path / "prepared")
    (tmp_path / "data" / "classes.txt").write_text("background\n")
    with pytest.raises(DataError, match=r"classes.txt: declares 1 class; segmentation needs 2"):
        open_folder(tmp_path / "data", tmp_path / "prepared")
    for value, reason in (("0", "expected two or more distinct"), ("0,300", "expected two or more"),
                          ("0,a", "expected comma-separated pixel values")):
        with pytest.raises(config.ConfigError, match=f"--mask_values='{value}': {reason}"):
            config.parse_mask_values(value)
    with pytest.raises(config.ConfigError, match=r"--mask_values=0,255: only for --dataset=folder"):
        parse_flags(**{**TINY_RUN, "workdir": str(tmp_path / "run"), "mask_values": "0,255"})


def test_evaluating_on_image_and_mask_folders_maps_the_runs_mask_values(tmp_path):
    from semiseg_tf.data import image_files
    binary_folder(tmp_path / "data", 255)
    folder = image_files.ImageMaskFolder(str(tmp_path / "data" / "val" / "images"),
                                         str(tmp_path / "data" / "val" / "masks"),
                                         ("background", "object"), mask_values=(0, 255))
    _, label = next(iter(folder.validation()))
    raw = np.asarray(Image.open(tmp_path / "data" / "val" / "masks" / "val_000.png"))
    np.testing.assert_array_equal(label.numpy(), raw // 255)
    assert set(np.unique(raw)) == {0, 255}


def test_stray_mask_values_with_known_classes_are_an_error(tmp_path):
    folder_with_masks(tmp_path / "data", [0, 1, 2, 7, 200])
    (tmp_path / "data" / "classes.txt").write_text("a\nb\nc\n")
    with pytest.raises(DataError, match=r"img_000.png: label values 7, 200 are outside the 3 "
                                        r"classes"):
        open_folder(tmp_path / "data", tmp_path / "prepared")


def test_classes_read_from_the_masks_are_announced_and_sparse_ids_warned_about(tmp_path):
    folder_with_masks(tmp_path / "data", [0, 1, 2, 7, 200])
    out = io.StringIO()
    source = open_folder(tmp_path / "data", tmp_path / "prepared", out=out)
    assert source.num_classes == 201
    text = out.getvalue()
    assert "201 classes, read from the masks (ids 0-200" in text
    assert "warning: only 5 of these 201 ids occur in the masks (0, 1, 2, 7, 200)" in text


def test_a_shard_corrupted_in_place_is_found_before_training_and_prepared_again(tmp_path):
    fx.write_folder(tmp_path / "data", num_classes=3)
    open_folder(tmp_path / "data", tmp_path / "prepared")
    shard = sorted(glob.glob(str(tmp_path / "prepared" / "train-*.tfrecord")))[0]
    content = bytearray(open(shard, "rb").read())
    content[len(content) // 2] ^= 0xFF                          # same size, other bytes
    open(shard, "wb").write(bytes(content))
    out = io.StringIO()
    source = open_folder(tmp_path / "data", tmp_path / "prepared", out=out)
    assert f"{shard}: content differs from the manifest (SHA-256)" in out.getvalue()
    image, label = source.read_train(tf.constant(0))
    assert image.shape[-1] == 3 and label.shape == image.shape[:2]


def test_n_val_larger_than_the_labelled_set_names_n_val(tmp_path):
    fx.write_folder(tmp_path / "data", n_labelled=6, num_classes=3)
    with pytest.raises(DataError, match=r"^--n_val=50: the folder training set in .* has only 6 "
                                        r"labelled images"):
        open_folder(tmp_path / "data", tmp_path / "prepared", n_val=50)


def test_an_empty_image_file_is_named_without_pil_internals(tmp_path):
    fx.write_folder(tmp_path / "data", num_classes=3)
    open(tmp_path / "data" / "images" / "img_004.png", "wb").close()
    with pytest.raises(DataError) as error:
        open_folder(tmp_path / "data", tmp_path / "prepared")
    assert str(error.value).endswith("img_004.png: an empty file (0 bytes), not a readable image")
    assert "BytesIO" not in str(error.value)
    # The failed preparation left no folder holding only its lock file.
    assert not os.path.exists(tmp_path / "prepared")


def test_an_empty_images_folder_is_called_empty(tmp_path):
    (tmp_path / "data" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match=r"data/images: holds no files \(the training images\)"):
        open_folder(tmp_path / "data", tmp_path / "prepared")


def test_palette_masks_that_disagree_with_palette_txt_get_a_note(tmp_path):
    fx.write_folder(tmp_path / "data", num_classes=3)
    for path in glob.glob(str(tmp_path / "data" / "**" / "masks" / "*.png"), recursive=True):
        mask = Image.open(path).convert("L").convert("P")
        mask.putpalette([0, 0, 0, 10, 20, 30, 40, 50, 60] + [0] * (256 * 3 - 9))
        mask.save(path)
    (tmp_path / "data" / "palette.txt").write_text("0 0 0\n255 0 0\n0 255 0\n")
    out = io.StringIO()
    open_folder(tmp_path / "data", tmp_path / "prepared", out=out)
    assert "is a palette PNG whose own colours differ from palette.txt's (class 1: (10, 20, 30)" \
        in out.getvalue()


def test_a_crop_larger_than_the_images_is_warned_about(tmp_path):
    out = io.StringIO()
    cfg, text = parse_flags(**{**TINY_RUN, "workdir": str(tmp_path / "run"), "crop_size": "24,24"})
    training.Trainer(cfg, text, out=out)        # the warning comes before training
    assert ("warning: --crop_size=24,24 is larger than 24 of the 24 training images (the smallest "
            "is 16x16") in out.getvalue()


# --- repeatability -------------------------------------------------------------------------------

def checkpoint_tensors(workdir):
    reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def test_the_same_run_twice_one_beside_a_cpu_heavy_process_gives_bit_identical_checkpoints(
        tmp_path):
    args = ["--train_steps=6", "--checkpoint_every=6", "--eval_every=6"]
    alone = train_process(f"--workdir={tmp_path}/alone", *args)
    assert alone.returncode == 0, alone.stderr[-2000:]
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        loaded = train_process(f"--workdir={tmp_path}/loaded", *args)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    first, second = (checkpoint_tensors(tmp_path / name) for name in ("alone", "loaded"))
    assert sorted(first) == sorted(second) and len(first) > 20
    moved = [name for name in first if name.startswith("student/")]
    assert moved
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


# --- signals -------------------------------------------------------------------------------------

def test_progress_lines_come_after_the_first_step_and_at_least_every_minute(tmp_path,
                                                                          monkeypatch):
    out = io.StringIO()
    run_in_process(tmp_path / "a", out=out, train_steps=3, log_every=1000)
    steps = [line.split()[1] for line in out.getvalue().splitlines() if line.startswith("step ")]
    assert steps == ["1/3", "3/3"]               # the first at once, then --log_every or the end
    monkeypatch.setattr(training.callbacks, "LOG_SECONDS", 0)      # every step is a minute later
    out = io.StringIO()
    run_in_process(tmp_path / "b", out=out, train_steps=3, log_every=1000)
    steps = [line.split()[1] for line in out.getvalue().splitlines() if line.startswith("step ")]
    assert steps == ["1/3", "2/3", "3/3"]


def start_slow_run(tmp_path, step_seconds):
    """A tiny run whose every step takes `step_seconds` longer inside its graph (tests/slow_step.py),
    its output going to a file as under a job scheduler or nohup: (process, path of the log, the
    time its first step began)."""
    log_path = tmp_path / "train.log"
    command = [sys.executable, os.path.join(REPO, "tests", "slow_step.py"), str(step_seconds),
               *TINY_ARGS, f"--workdir={tmp_path}/run", "--train_steps=1000", "--log_every=1",
               "--checkpoint_every=1000", "--eval_every=1000"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    deadline = time.monotonic() + 120
    while "training tiny_unet" not in log_path.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.2)
    return process, log_path, time.monotonic()


def wait_for_text(log_path, text, seconds, after=""):
    """Seconds until `text` appeared in the file (after the first `after`); fails after `seconds`."""
    start = time.monotonic()
    while text not in (log_path.read_text().partition(after)[2] if after else log_path.read_text()):
        assert time.monotonic() - start < seconds, log_path.read_text()
        time.sleep(0.1)
    return time.monotonic() - start


def test_a_second_ctrl_c_ends_a_run_at_once_in_the_middle_of_a_long_step(tmp_path):
    process, log_path, _ = start_slow_run(tmp_path, step_seconds=600)
    wait_for_text(log_path, "slow step: waiting", seconds=60)    # inside the ten-minute step
    process.send_signal(signal.SIGINT)
    # Acknowledged at once, in the file, though the step goes on for minutes.
    wait_for_text(log_path, "SIGINT: stopping at the end of this step, with a checkpoint "
                            "(Ctrl-C again stops at once)", seconds=10)
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    process.wait(timeout=15)
    assert process.returncode == 128 + signal.SIGINT, log_path.read_text()
    assert "SIGINT again: stopping now, without a checkpoint" in log_path.read_text()
    training.lock_workdir(str(tmp_path / "run"))      # the ended process holds it no more
    training.release_workdir(str(tmp_path / "run"))


def test_sigterm_in_the_middle_of_a_long_step_is_acknowledged_at_once_and_saves_after_it(tmp_path):
    process, log_path, _ = start_slow_run(tmp_path, step_seconds=6)
    # A whole step done, and the second one in its wait.
    wait_for_text(log_path, "slow step: waiting", seconds=120, after="step 1/1000")
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    acknowledged = wait_for_text(log_path, "SIGTERM: stopping at the end of this step", seconds=10)
    assert acknowledged < 3, acknowledged
    process.wait(timeout=60)
    text = log_path.read_text()
    assert process.returncode == 128 + signal.SIGTERM, text
    assert time.monotonic() - sent > 3, text     # the step in progress was finished, not cut short
    stopped = [line for line in text.splitlines() if line.startswith("stopped by SIGTERM")]
    assert len(stopped) == 1 and "run the same command to continue" in stopped[0], text
    step = int(stopped[0].split("at step ")[1].split()[0])
    assert step >= 2
    # The checkpoint of the step it finished, the latest, with finite values only.
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith(f"ckpt-{step}")
    assert checkpoint_finite(str(tmp_path / "run" / "checkpoints" / f"ckpt-{step}"))
