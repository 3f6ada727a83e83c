"""Run by test_robustness.py in its own process (logical devices must be set before TF starts).

A tiny run under MirroredStrategy over two logical CPU devices, --on_nonfinite=skip: one step whose
labelled batch holds a nan pixel on the first replica's half only, then a clean step. Prints what
happened: every replica must skip the poisoned step (no weight of student or teacher changes, the
optimiser does not count it) and train on the clean one.
"""
import os
import sys

import numpy as np
import tensorflow as tf
from absl import flags

from semiseg_tf import config, training


def main():
    args = {"workdir": f"{sys.argv[1]}/run", "synthetic_num_train": 16, "synthetic_num_val": 4,
            "synthetic_image_size": 16, "crop_size": "16,16", "n_sup": 4, "arch": "tiny_unet",
            "batch_size": 4, "train_steps": 3, "image_every": 0, "conf_thresh": 0.3,
            "strategy": "mirrored", "cpu_devices": 2, "on_nonfinite": "skip"}
    flags.FLAGS(["x"] + [f"--{k}={v}" for k, v in args.items()])
    trainer = training.Trainer(config.from_flags(), config.to_flagfile_text(),
                               out=open(os.devnull, "w"))
    model, strategy = trainer.model, trainer.strategy
    batch = next(iter(trainer.pipeline.train_dataset(0)))
    poisoned = dict(batch, labelled=dict(batch["labelled"]))
    poisoned["labelled"]["image"] = tf.tensor_scatter_nd_update(
        batch["labelled"]["image"], [[0, 2, 2, 1]], [float("nan")])   # sample 0: replica 0's
    step_fn = model.make_train_function()

    def one_step(data, step):
        iterator = iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(data)))
        return step_fn(iterator)

    def state():
        return [v.numpy() for v in model.student.variables + model.teacher.variables]
    before, iterations = state(), int(model.optimizer.iterations.numpy())
    one_step(poisoned, 1)
    unchanged = all(np.array_equal(a, b) for a, b in zip(before, state()))
    skipped = int(model.nonfinite_steps.numpy())
    same_count = int(model.optimizer.iterations.numpy()) == iterations
    one_step(batch, 2)
    trained = (int(model.optimizer.iterations.numpy()) == iterations + 1
               and not all(np.array_equal(a, b) for a, b in zip(before, state())))
    print(f"replicas {strategy.num_replicas_in_sync}: skipped {skipped}, "
          f"{'unchanged' if unchanged and same_count else 'CHANGED'}, "
          f"{'then trained' if trained else 'then did NOT train'}")


if __name__ == "__main__":
    main()
