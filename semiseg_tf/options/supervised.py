"""Flags of the supervised loss: class weights and online hard example mining (OHEM)."""
import dataclasses
import os

from semiseg_tf.options import Section, Topic, absolute_path

# semiseg_tf.semisup.class_weights.KINDS (a test holds the two equal), named here so that --help
# does not import TensorFlow.
CLASS_WEIGHT_KINDS = ("none", "inverse", "median")

TOPIC = Topic("Supervised loss", __name__)

TOPIC.define("string", "class_weights", "none", "Weights of the classes in the supervised "
        "cross-entropy, for rare classes: none; inverse (inverse pixel frequency, N / (K n_c), so "
        "the average pixel weighs 1); median (median frequency balancing, as SegNet); both computed "
        "from the labelled masks' pixel counts and printed at the start; or a file of one number "
        "per class, in class order. The loss is the weighted sum over the labelled pixels divided "
        "by the sum of their weights (PyTorch's CrossEntropyLoss(weight=...)).")
TOPIC.define("float", "ohem_thresh", 1.0, "Online hard example mining, as UniMatch's "
        "ProbOhemCrossEntropy2d (its Cityscapes recipe: 0.7): the supervised loss counts only the "
        "labelled pixels whose predicted probability of their true class is at most this, or at "
        "most the --ohem_min_kept-th smallest one if that is larger. 1: every pixel (no mining).")
TOPIC.define("integer", "ohem_min_kept", 200000, "OHEM: at least this many pixels of the global "
        "batch (all replicas together) stay in the loss; a batch with fewer labelled pixels keeps "
        "them all; 0 mines nothing (as UniMatch's code). UniMatch's 200,000 counts per GPU (2 images "
        "of 801x801 each).")


def _kind_or_path(name, text):
    return text if text in CLASS_WEIGHT_KINDS else absolute_path(name, text)


@dataclasses.dataclass(frozen=True)
class Supervised(Section):
    TOPIC = TOPIC
    PARSE = {"class_weights": _kind_or_path}
    class_weights: str
    ohem_thresh: float
    ohem_min_kept: int

    def check(self):
        self.require(self.class_weights in CLASS_WEIGHT_KINDS or os.path.isfile(self.class_weights),
                     "class_weights", f"expected {', '.join(CLASS_WEIGHT_KINDS)} or a file of "
                     "weights (no such file)")
        self.require(0 < self.ohem_thresh <= 1, "ohem_thresh", "must lie in (0, 1]")
        self.require(self.ohem_min_kept >= 0, "ohem_min_kept", "must be >= 0")

    @property
    def ohem(self):
        """(thresh, min_kept) for semisup.losses.cross_entropy, or None when there is no mining."""
        return None if self.ohem_thresh >= 1 else (self.ohem_thresh, self.ohem_min_kept)
