"""semiseg_tf: semi-supervised semantic segmentation in TensorFlow 2 / Keras 3.

From Python (docs/python.md):

    import semiseg_tf
    student = semiseg_tf.build_network("small_unet", num_classes=6)
    teacher = semiseg_tf.build_network("small_unet", num_classes=6)
    model = semiseg_tf.MeanTeacher(student, teacher, semiseg_tf.CutMix())
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    batches = semiseg_tf.training_batches(labelled, unlabelled, model, crop_size=(64, 64),
                                          batch_size=8)
    model.fit(batches, steps_per_epoch=500, epochs=4)
    model.evaluate(semiseg_tf.evaluation_batches(validation))     # miou, pixel_accuracy
"""
__version__ = "0.1.0"

import os as _os
import sys as _sys

# TensorFlow's C++ logging below errors hides the progress output of the command-line tools; users
# can still ask for it by setting the variable themselves (0 also keeps the start-up notices).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load():
    """Imports TensorFlow without its start-up notices, then every module whose classes Keras may
    meet in a saved file (each registers its classes when imported), so that
    `keras.saving.load_model("network.keras")` works after a plain `import semiseg_tf`."""
    from semiseg_tf import quiet_start
    quiet_start.import_tensorflow()
    from semiseg_tf import models
    from semiseg_tf.semisup import optim
    models.available(), optim.__name__      # loaded even where a command named them lazily


# The commands started through semiseg_tf.options.run_command, which calls load() once it has
# answered --help, so that the help does not wait for TensorFlow. The others (paper.toy2d,
# paper.analysis, convert_torchvision) need load() here, for its quiet start.
_LOAD_AFTER_HELP = {f"semiseg_tf.{name}" for name in ("train", "prepare", "evaluate", "predict",
                                                      "export", "select")}


def _started_as_command_that_loads_later():
    """Whether this is `python -m` of one of _LOAD_AFTER_HELP. While Python locates the module,
    sys.argv[0] is "-m"."""
    argv = getattr(_sys, "orig_argv", [])
    return (_sys.argv[:1] == ["-m"] and "-m" in argv[:-1]
            and argv[argv.index("-m") + 1] in _LOAD_AFTER_HELP)


if not _started_as_command_that_loads_later():
    load()


# The public API: name -> (module, attribute), imported on first use, so that a command's --help
# (which imports this package) need not load TensorFlow.
_API = {
    # networks
    "build_network": ("semiseg_tf.models", "build"),
    "available_networks": ("semiseg_tf.models", "available"),
    "input_multiple": ("semiseg_tf.models", "input_multiple"),
    # training
    "MeanTeacher": ("semiseg_tf.semisup.mean_teacher", "MeanTeacher"),
    "Perturbation": ("semiseg_tf.semisup.methods.base", "Perturbation"),
    **{name: ("semiseg_tf.semisup.methods.mixing", name) for name in ("CutMix", "Cutout", "ICT")},
    "StandardAugmentation": ("semiseg_tf.semisup.methods.augmentation", "StandardAugmentation"),
    "VAT": ("semiseg_tf.semisup.methods.vat", "VAT"),
    **{name: ("semiseg_tf.semisup.methods.pseudo_labels", name)
       for name in ("FixMatch", "UniMatch", "UniMatchV2")},
    "build_perturbation": ("semiseg_tf.semisup.methods.base", "build"),
    "BoxMaskParams": ("semiseg_tf.augment.boxmask", "BoxMaskParams"),
    "build_optimizer": ("semiseg_tf.semisup.optim", "build_optimizer"),
    "AuthorsSchedule": ("semiseg_tf.semisup.optim", "AuthorsSchedule"),
    # data
    "training_batches": ("semiseg_tf.data.user_datasets", "training_batches"),
    "evaluation_batches": ("semiseg_tf.data.user_datasets", "evaluation_batches"),
    "GeometricParams": ("semiseg_tf.augment.geometric", "GeometricParams"),
    "ColourParams": ("semiseg_tf.augment.colour", "ColourParams"),
    "check_colour_cue": ("semiseg_tf.augment.colour_cue", "check"),
    # inference and scores
    "Segmenter": ("semiseg_tf.inference", "Segmenter"),
    "InferenceOptions": ("semiseg_tf.inference", "InferenceOptions"),
    "open_model": ("semiseg_tf.trained", "open_model"),
    "MeanIoU": ("semiseg_tf.metrics", "MeanIoU"),
    "PixelAccuracy": ("semiseg_tf.metrics", "PixelAccuracy"),
    "scores": ("semiseg_tf.metrics", "scores"),
}
__all__ = sorted(_API)


def __getattr__(name):
    if name not in _API:
        raise AttributeError(f"module 'semiseg_tf' has no attribute {name!r}")
    import importlib
    module, attribute = _API[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))
