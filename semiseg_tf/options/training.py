"""Flags of a training run's length, batch and seed."""
import dataclasses

from semiseg_tf.options import Section, Topic

TOPIC = Topic("Training", __name__)

TOPIC.define("integer", "seed", 0, "Seed of weight initialisation and of every random draw of the "
        "input pipeline (order, augmentation, masks). Same seed, same run.")
TOPIC.define("integer", "train_steps", 2000, "Number of optimiser steps.", field="steps")
TOPIC.define("integer", "batch_size", 8, "Global batch size of the labelled batch and of each "
        "unlabelled batch (split across replicas).")
TOPIC.define("integer", "stop_at_step", 0, "Pause the run after this step (checkpointed) instead of"
        " finishing; the same command with a later or no --stop_at_step continues it. For job "
        "systems with time limits. 0: run to --train_steps.")
TOPIC.define("enum", "on_nonfinite", "stop", ["stop", "skip"], "A step whose loss or gradient "
        "is nan or inf never changes the weights. stop: the run then stops with one line naming the "
        "step, saves nothing more (its latest checkpoint is its last good state) and exits with "
        "status 3. skip: such steps are skipped, counted and reported, and training goes on (a run "
        "whose weights themselves become non-finite stops either way).")


@dataclasses.dataclass(frozen=True)
class Training(Section):
    TOPIC = TOPIC
    seed: int
    steps: int
    batch_size: int
    stop_at_step: int
    on_nonfinite: str

    def check(self):
        for field in ("steps", "batch_size"):
            self.require(getattr(self, field) > 0, field, "must be positive")
        self.require(self.stop_at_step >= 0, "stop_at_step", "must be >= 0")
