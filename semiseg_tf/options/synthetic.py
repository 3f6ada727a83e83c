"""Flags of the embedded synthetic dataset (semiseg_tf/data/synthetic.py)."""
import dataclasses

from semiseg_tf.options import Section, Topic

TOPIC = Topic("Synthetic dataset", __name__)

TOPIC.define("integer", "synthetic_num_train", 1000, "Synthetic dataset: number of training "
        "images.", field="num_train")
TOPIC.define("integer", "synthetic_num_val", 200, "Synthetic dataset: number of validation images.",
        field="num_val")
TOPIC.define("integer", "synthetic_image_size", 64, "Synthetic dataset: side of the square images, "
        "px.", field="image_size")
TOPIC.define("integer", "synthetic_seed", 0, "Synthetic dataset: seed of the scenes (separate from "
        "--seed, so runs with different seeds see the same data).", field="seed")
TOPIC.define("boolean", "synthetic_representative_split", True, "Synthetic dataset: of 32 candidate"
        " labelled subsets drawn from --split_seed, take the one whose class pixel shares are "
        "nearest the whole training set's (a random 10-image subset can hold a class at half its "
        "share, and the teacher then spreads that bias). --nosynthetic_representative_split takes "
        "the first candidate, the authors' plain permutation.", field="representative_split")

TOPIC.define("integer", "synthetic_rare_class", 0, "Synthetic dataset: make this class (1-5: disk, "
        "square, triangle, ring, cross) rare, in training and validation scenes alike, to try class "
        "weights on (--class_weights). 0: none.", field="rare_class")
TOPIC.define("float", "synthetic_rare_keep", 1.0, "Synthetic dataset: the share of "
        "--synthetic_rare_class's objects drawn as that class; the others are drawn as another "
        "class.", field="rare_keep")


@dataclasses.dataclass(frozen=True)
class Synthetic(Section):
    TOPIC = TOPIC
    num_train: int
    num_val: int
    image_size: int
    seed: int
    representative_split: bool
    rare_class: int
    rare_keep: float

    def check(self):
        for field in ("num_train", "num_val", "image_size"):
            self.require(getattr(self, field) > 0, field, "must be positive")
        self.require(0 <= self.rare_class <= 5, "rare_class", "expected 0 (none) or a class, 1-5")
        self.require(0 <= self.rare_keep <= 1, "rare_keep", "must lie in [0, 1]")
