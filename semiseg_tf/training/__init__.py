"""Training runs, in sections: `builders` (the run's objects from its Config), `devices`
(strategies), `run_folder` (its files and lock), `checkpoint_store`, `stops` (SIGTERM and Ctrl-C),
`callbacks` (the run's guarantees as Keras callbacks), `reporting` (scores, pictures, TensorBoard)
and `trainer` (the run: build, restore, `fit`, score).

The names below are imported on first use, so that importing one section (`evaluate` needs only
`builders`) does not load the others.
"""
import importlib

_SECTIONS = ("builders", "callbacks", "checkpoint_store", "devices", "reporting", "run_folder",
             "stops", "trainer")
_NAMES = {
    "Trainer": "trainer",
    "RunResult": "trainer",
    **dict.fromkeys(["build_model", "build_perturbation", "build_source", "geometric_params",
                     "pipeline_params", "student_colour_params"], "builders"),
    **dict.fromkeys(["check_jit_compile", "cluster_resolver", "is_multi_worker",
                     "make_strategy"], "devices"),
    **dict.fromkeys(["FLAGS_FILE", "HISTORY_FILE", "METRICS_FILE", "check_workdir_flags",
                     "lock_workdir", "release_workdir"], "run_folder"),
}
_ERRORS = ("RunFolderError", "TrainingDiverged", "WorkerLost")


def __getattr__(name):
    if name in _SECTIONS:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    if name in _ERRORS:
        return getattr(importlib.import_module("semiseg_tf.errors"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SECTIONS) | set(_NAMES) | set(_ERRORS))
