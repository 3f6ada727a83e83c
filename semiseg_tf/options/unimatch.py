"""Flags of UniMatch's streams: its feature dropout and the weights of its losses."""
import dataclasses

from semiseg_tf.options import Section, Topic, parse_numbers

TOPIC = Topic("UniMatch", __name__)

TOPIC.define("float", "unimatch_dropout", 0.5, "UniMatch: the share of each feature map's channels "
        "its feature stream drops.", field="dropout")
TOPIC.define("string", "unimatch_weights", "0.25,0.25,0.5", "UniMatch: the weights of its three "
        "consistency losses, the two strong views and the feature stream.", field="weights")


@dataclasses.dataclass(frozen=True)
class UniMatch(Section):
    TOPIC = TOPIC
    PARSE = {"weights": parse_numbers(float)}
    dropout: float
    weights: tuple

    def check(self):
        self.require(0 <= self.dropout < 1, "dropout", "must lie in [0, 1)")
        self.require(len(self.weights) == 3 and min(self.weights) >= 0, "weights", "expected 3 "
                     "comma-separated weights >= 0 (strong view 1, strong view 2, feature stream)")
