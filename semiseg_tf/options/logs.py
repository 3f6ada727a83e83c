"""Flags of what a training run prints and saves, and how often."""
import dataclasses

from semiseg_tf.options import Section, Topic

TOPIC = Topic("Logging and checkpoints", __name__)

TOPIC.define("integer", "log_every", 50, "Print a progress line and write TensorBoard scalars every"
        " N steps, after the first step, and whenever a minute passed without a line.")
TOPIC.define("integer", "image_every", 500, "Write TensorBoard image panels every N steps (0: "
        "never).")
TOPIC.define("integer", "checkpoint_every", 500, "Save a checkpoint every N steps (and at the "
        "end).")
TOPIC.define("integer", "keep_checkpoints", 2, "Number of most recent checkpoints kept.")


@dataclasses.dataclass(frozen=True)
class Logs(Section):
    TOPIC = TOPIC
    log_every: int
    image_every: int
    checkpoint_every: int
    keep_checkpoints: int

    def check(self):
        for field in ("log_every", "checkpoint_every", "keep_checkpoints"):
            self.require(getattr(self, field) > 0, field, "must be positive")
        self.require(self.image_every >= 0, "image_every", "must be >= 0")
