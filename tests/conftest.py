"""Shared helpers: tiny configurations that train in seconds on a CPU, and running a command."""
import io
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Under pytest-xdist (scripts/test.sh runs two workers) each worker computes on one thread:
# two workers of two threads each on two cores would oversubscribe them, and most of a test's time
# is tracing and Python, which the second worker overlaps. Processes the tests start inherit this.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for variable in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(variable, "1")

import pytest  # noqa: E402
from absl import flags  # noqa: E402

from semiseg_tf import config  # noqa: E402

TINY_RUN = {
    "dataset": "synthetic", "synthetic_num_train": 24, "synthetic_num_val": 6,
    "synthetic_image_size": 16, "crop_size": "16,16", "n_sup": 4, "arch": "tiny_unet",
    # No picture panels (they cost a few seconds a run): the tests of panels turn them on.
    "batch_size": 2, "train_steps": 4, "eval_every": 2, "log_every": 1, "image_every": 0,
    "checkpoint_every": 2, "eval_batch_size": 3, "aug_hflip": "true", "aug_scale_hung": "true",
    "conf_thresh": 0.5,
}


# The peak resident memory of the process that runs this line, in bytes: the kernel's high-water
# mark of its own memory. Not getrusage's ru_maxrss, which Linux carries from a parent into a child
# across fork and exec: a child started by a large pytest worker would report the worker's peak.
PEAK_BYTES = "int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) * 1024"


def parse_flags(**values):
    """Parses `--name=value` for each keyword (everything else at its default); returns (Config, text)."""
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["test"] + [f"--{name}={value}" for name, value in values.items()])
    return config.from_flags(), config.to_flagfile_text()


@pytest.fixture
def tiny_run(tmp_path):
    """A function: overrides -> (Config, flagfile text) of a tiny run in a fresh workdir."""
    def make(**overrides):
        values = {**TINY_RUN, "workdir": str(tmp_path / "run"), **overrides}
        return parse_flags(**values)
    return make


@pytest.fixture(scope="session")
def trained_tiny_run(tmp_path_factory):
    """The folder of one finished TINY_RUN, trained once per test process; tests only read it."""
    import os

    from semiseg_tf import training
    workdir = tmp_path_factory.mktemp("trained_tiny") / "run"
    cfg, text = parse_flags(**{**TINY_RUN, "workdir": str(workdir)})
    with open(os.devnull, "w") as quiet:
        training.Trainer(cfg, text, out=quiet).run()
    return str(workdir)


@pytest.fixture(scope="session")
def pascal_aug_dir(tmp_path_factory):
    """A VOC2012 folder with every name of the shipped split (tiny images), prepared once per session:
    (data_dir, prepared_dir)."""
    import dataset_fixtures
    from semiseg_tf.data import layouts, records
    root = tmp_path_factory.mktemp("pascal_aug")
    dataset_fixtures.write_pascal(root / "VOC2012", augmented=True)
    with open(os.devnull, "w") as out:
        records.prepare(layouts.pascal_layout(str(root / "VOC2012")), str(root / "prepared"),
                        out=out)
    return root / "VOC2012", root / "prepared"


def run_main(name, *args):
    """`python -m semiseg_tf.NAME ARGS` in this process: the command's flags parsed from `args`,
    its main() called as run_command calls it, its output captured (a TensorFlow start-up per
    command would cost seconds). Returns an object with returncode, stdout and stderr, as subprocess.run's."""
    import contextlib
    import importlib
    import types

    from absl import flags
    module = importlib.import_module(f"semiseg_tf.{name}")
    flags.FLAGS.unparse_flags()
    argv = flags.FLAGS([name, *args])
    out, err = io.StringIO(), io.StringIO()
    from semiseg_tf import options
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = options.reporting_errors(module.main, argv)
    return types.SimpleNamespace(returncode=status, stdout=out.getvalue(), stderr=err.getvalue())


def one_error(done, *fragments):
    """The one 'error:' line of a failed command, holding every fragment, and no traceback."""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]
