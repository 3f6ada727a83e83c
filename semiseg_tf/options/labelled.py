"""Flags that choose which training images are labelled."""
import dataclasses
import os

from semiseg_tf.options import Section, Topic, absolute_path

TOPIC = Topic("Labelled subset", __name__)

TOPIC.define("integer", "n_sup", 10, "Number of labelled training images (-1: all). Every training "
        "image, labelled or not, is also in the unlabelled set.")
TOPIC.define("integer", "split_seed", 12345, "Seed of the permutation that picks the labelled "
        "subset (numpy RandomState over the sorted training names, as the authors': their "
        "Cityscapes seeds 12345-56789 pick their subsets). pascal_aug ignores it: it takes the "
        "shipped Mittal split.")
TOPIC.define("string", "split_file", None, "A text file of training image names, one per line: "
        "--n_sup=k labels the first k (replaces the seeded draw, and pascal_aug's shipped split).")


@dataclasses.dataclass(frozen=True)
class Labelled(Section):
    TOPIC = TOPIC
    PARSE = {"split_file": absolute_path}
    n_sup: int
    split_seed: int
    split_file: str

    def check(self):
        self.require(self.n_sup == -1 or self.n_sup > 0, "n_sup", "must be positive, or -1 for all")
        self.require(not self.split_file or os.path.isfile(self.split_file), "split_file",
                     "no such file")
