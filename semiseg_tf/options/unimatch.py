"""Flags of UniMatch's streams (its feature dropout, the weights of its losses) and UniMatch V2's
complementary dropout."""
import dataclasses

from semiseg_tf.options import Section, Topic, parse_numbers

TOPIC = Topic("UniMatch", __name__)

TOPIC.define("float", "unimatch_dropout", 0.5, "UniMatch: the share of each feature map's channels "
        "its feature stream drops.", field="dropout")
TOPIC.define("string", "unimatch_weights", "0.25,0.25,0.5", "UniMatch: the weights of its three "
        "consistency losses, the two strong views and the feature stream.", field="weights")

TOPIC.define("boolean", "comp_dropout", True, "UniMatch V2: drop the two strong views' encoder "
        "features complementarily (each channel of an image kept, doubled, in one view and zeroed "
        "in the other). --nocomp_dropout leaves two plain strong views.", field="complementary")
TOPIC.define("float", "comp_dropout_kept", 0.5, "UniMatch V2: the share of images whose two "
        "views keep all their channels (the original keeps exactly half of a GPU's batch; here "
        "each image is kept with this probability).", field="kept_share")


@dataclasses.dataclass(frozen=True)
class UniMatch(Section):
    TOPIC = TOPIC
    PARSE = {"weights": parse_numbers(float)}
    dropout: float
    weights: tuple
    complementary: bool
    kept_share: float

    def check(self):
        self.require(0 <= self.dropout < 1, "dropout", "must lie in [0, 1)")
        self.require(len(self.weights) == 3 and min(self.weights) >= 0, "weights", "expected 3 "
                     "comma-separated weights >= 0 (strong view 1, strong view 2, feature stream)")
        self.require(0 <= self.kept_share <= 1, "kept_share", "must lie in [0, 1]")
