"""Training runs, in sections: `builders` (the run's objects from its Config), `devices`
(strategies), `run_folder` (its files and lock), `checkpoint_store`, `stops` (SIGTERM and Ctrl-C),
`callbacks` (the run's guarantees as Keras callbacks), `reporting` (scores, pictures, TensorBoard)
and `trainer` (the run: build, restore, `fit`, score)."""
from semiseg_tf.errors import RunFolderError, TrainingDiverged, WorkerLost  # noqa: F401
from semiseg_tf.training import (  # noqa: F401
    builders, callbacks, checkpoint_store, devices, reporting, run_folder, stops, trainer)
from semiseg_tf.training.builders import (  # noqa: F401
    build_model, build_perturbation, build_source, pipeline_params)
from semiseg_tf.training.devices import (  # noqa: F401
    check_jit_compile, cluster_resolver, is_multi_worker, make_strategy)
from semiseg_tf.training.run_folder import (  # noqa: F401
    FLAGS_FILE, HISTORY_FILE, METRICS_FILE, check_workdir_flags, lock_workdir, release_workdir)
from semiseg_tf.training.trainer import RunResult, Trainer  # noqa: F401
