"""Flags of the trainer's validation (how it predicts: the inference flags)."""
import dataclasses

from semiseg_tf.options import Section, Topic

TOPIC = Topic("Evaluation during training", __name__)

TOPIC.define("boolean", "bin_fill_holes", False, "Two-class datasets (ISIC 2017): fill holes in "
        "each predicted foreground region before scoring, as the paper does. Kept with the run: "
        "evaluate, predict and the exported model fill them too.")
TOPIC.define("integer", "eval_every", 500, "Evaluate the teacher on the validation set every N "
        "steps (and at the end).")


@dataclasses.dataclass(frozen=True)
class Evaluation(Section):
    TOPIC = TOPIC
    bin_fill_holes: bool
    eval_every: int

    def check(self):
        self.require(self.eval_every > 0, "eval_every", "must be positive")
