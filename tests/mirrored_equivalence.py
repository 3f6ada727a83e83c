"""Run by test_distributed.py in its own process (logical devices must be set before TF starts).

Trains the same tiny run (CutMix, or the perturbation given as `--name=value` arguments after the
output folder) twice through the real Trainer, on one device and on two logical CPU
devices under MirroredStrategy, and prints the largest weight difference as JSON.
"""
import json
import os
import sys

import keras
import numpy as np
from absl import flags

from semiseg_tf import config, training


def run(workdir, **overrides):
    args = {"workdir": workdir, "synthetic_num_train": 16, "synthetic_num_val": 4,
            "synthetic_image_size": 16, "crop_size": "16,16", "n_sup": 4, "arch": "tiny_unet",
            "batch_size": 4, "train_steps": 3, "eval_every": 3, "log_every": 3, "image_every": 0,
            "conf_thresh": 0.3, "aug_hflip": "true", **overrides}
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["x"] + [f"--{k}={v}" for k, v in args.items()])
    trainer = training.Trainer(config.from_flags(), config.to_flagfile_text(),
                               out=open(os.devnull, "w"))
    result = trainer.run()
    return trainer, result


def main():
    out = sys.argv[1]
    overrides = dict(arg[2:].split("=", 1) for arg in sys.argv[2:])
    mirrored, mirrored_result = run(f"{out}/mirrored", strategy="mirrored", cpu_devices=2, **overrides)
    single, single_result = run(f"{out}/single", **overrides)
    diffs = {}
    for part in ("student", "teacher"):
        a = getattr(single.model, part).weights
        b = getattr(mirrored.model, part).weights
        diffs[part] = max(float(np.abs(x.numpy() - y.numpy()).max()) for x, y in zip(a, b))
    keras.utils.set_random_seed(single.cfg.training.seed)   # as the Trainer does: the initial weights again
    initial = training.build_model(single.cfg, single.source.num_classes).student.weights
    moved = max(float(np.abs(w.numpy() - w0.numpy()).max())
                for w, w0 in zip(single.model.student.weights, initial))
    print(json.dumps({"replicas": mirrored.strategy.num_replicas_in_sync, "diff": diffs,
                      "moved": moved, "miou": [single_result.miou, mirrored_result.miou]}))


if __name__ == "__main__":
    main()
