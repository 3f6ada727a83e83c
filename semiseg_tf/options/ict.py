"""Flags of ICT, the mixup consistency (semiseg_tf/semisup/methods/mixing.py)."""
import dataclasses

from semiseg_tf.options import Section, Topic

TOPIC = Topic("ICT", __name__)

TOPIC.define("float", "ict_alpha", 0.1, "ICT: the Beta(alpha, alpha) distribution of the mixing "
        "factor, one per sample.", field="alpha")


@dataclasses.dataclass(frozen=True)
class Ict(Section):
    TOPIC = TOPIC
    alpha: float

    def check(self):
        self.require(self.alpha > 0, "alpha", "must be positive")
