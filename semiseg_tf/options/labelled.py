"""Flags that choose which training images are labelled."""
from semiseg_tf.options import Topic

TOPIC = Topic("Labelled subset", __name__)

TOPIC.define("integer", "n_sup", 10, "Number of labelled training images (-1: all). Every training "
        "image, labelled or not, is also in the unlabelled set.")
TOPIC.define("integer", "split_seed", 12345, "Seed of the permutation that picks the labelled "
        "subset (numpy RandomState over the sorted training names, as the authors': their "
        "Cityscapes seeds 12345-56789 pick their subsets). pascal_aug ignores it: it takes the "
        "shipped Mittal split.")
TOPIC.define("string", "split_file", None, "A text file of training image names, one per line: "
        "--n_sup=k labels the first k (replaces the seeded draw, and pascal_aug's shipped split).")
