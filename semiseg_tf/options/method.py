"""Flags of the semi-supervised method: mean teacher or Pi, the perturbation, the loss."""
from absl import flags

import dataclasses

from semiseg_tf import catalog
from semiseg_tf.options import Section, Topic

# semiseg_tf.semisup.losses.CONSISTENCY_LOSSES's names (a test holds them equal), named here so that
# --help does not import TensorFlow.
CONSISTENCY_LOSSES = ("bce", "hard_ce", "kld", "logits_smoothl1", "logits_var", "var")

TOPIC = Topic("Method", __name__)

TOPIC.define("enum", "model", "mean_teacher", ["mean_teacher", "pi"],
        "'mean_teacher': targets from an EMA teacher, which is what gets evaluated; 'pi': the "
        "student is its own teacher (targets without gradient), and the student is evaluated.")
TOPIC.define("string", "perturbation", "cutmix", "Consistency perturbation: " + "; ".join(
        f"{entry.name} ({entry.summary}"
        + ("; needs a network with an encoder/decoder split)" if entry.needs_feature_split else ")")
        for entry in map(catalog.method, catalog.method_names()))
        + ". Run fixmatch, unimatch and unimatch_v2 from a recipe (flags/demo/, flags/beyond/): it "
        "sets the strong view, the loss and its averaging. Unused when --cons_weight=0.")
TOPIC.define("float", "cons_weight", 1.0, "Weight of the consistency loss; 0 trains the supervised "
        "baseline (through the same trainer, teacher still evaluated).")
TOPIC.define("float", "sup_weight", 1.0, "Weight of the supervised loss (FixMatch and UniMatch "
        "average the two losses: --sup_weight=0.5 --cons_weight=0.5).")
TOPIC.define("float", "conf_thresh", 0.97, "Teacher confidence threshold: the consistency loss is "
        "scaled by the share of batch pixels whose teacher max-probability is at least this. 0 "
        "disables. Also spelt --pseudo_label_thresh (FixMatch's 0.95, with --conf_per_pixel).")
TOPIC.define("enum", "cons_loss_fn", "var", list(CONSISTENCY_LOSSES),
        "Consistency loss per pixel, summed over classes: var = squared difference of "
        "probabilities; bce = binary cross-entropy of probabilities; kld = KL(teacher || student); "
        "hard_ce = cross-entropy against the teacher's most likely class (a hard pseudo-label, as "
        "FixMatch; with --conf_per_pixel it counts only the confident pixels); logits_var = "
        "squared difference of logits / sqrt(classes); logits_smoothl1 = Huber of the logit "
        "difference / sqrt(classes). VAT also uses it as the distance that finds its "
        "direction.")
TOPIC.define("boolean", "conf_per_pixel", False, "Confidence weighting per pixel: the loss counts "
        "only where the teacher is confident, instead of being scaled by the batch's confident "
        "share.")
TOPIC.define("enum", "cons_average", "pixels", ["pixels", "valid", "confident"], "What the "
        "consistency loss's sum is divided by: pixels = every pixel of the batch (the paper's "
        "authors); valid = the pixels its loss mask counts, e.g. those inside the image and, for "
        "CutMix, from either image (FixMatch and UniMatch); confident = the counted pixels where the "
        "teacher is confident (needs --conf_per_pixel).")
TOPIC.define("integer", "rampup", 0, "Sigmoid ramp-up of the consistency weight, exp(-5 (1 - t)^2),"
        " over this many steps (the authors count epochs; 0: no ramp-up, the paper's default since "
        "the confident share grows by itself).")
TOPIC.define("boolean", "bn_stats_from_unlabelled", True, "Let the student's and teacher's passes "
        "on unlabelled (perturbed) batches update their batch-norm moving statistics, as the "
        "authors' code does. --nobn_stats_from_unlabelled keeps the statistics of the labelled pass"
        " only (the teacher's are then the EMA of the student's); on the embedded dataset that is "
        "worth about 4 mIoU points to standard-augmentation consistency and less to CutMix "
        "(BENCHMARKS.md).")
TOPIC.define("integer", "unsup_batch_ratio", 1, "Consistency losses per step, each on its own "
        "--batch_size unlabelled batch(es), summed (the authors' repeated backward passes).")
TOPIC.define("float", "teacher_alpha", 0.99, "EMA decay of the mean teacher, over all weights and "
        "batch-norm moving statistics, applied after every step.")
TOPIC.define("boolean", "teacher_alpha_warmup", False, "Warm the EMA decay up: after the t-th update"
        " (t from 1) it is min(1 - 1 / t, --teacher_alpha), so the teacher follows the student "
        "closely at first (Tarvainen and Valpola's mean teacher, UniMatch V2 with 0.996).")

# Other names of flags, listed in --help beside them: FixMatch's name for the threshold of its
# pseudo-labels is the same flag as the confidence threshold.
ALIASES = {"pseudo_label_thresh": "conf_thresh"}
for _alias, _flag in ALIASES.items():
    flags.DEFINE_alias(_alias, _flag, module_name=TOPIC.module)


@dataclasses.dataclass(frozen=True)
class Method(Section):
    TOPIC = TOPIC
    model: str
    perturbation: str
    cons_weight: float
    sup_weight: float
    conf_thresh: float
    cons_loss_fn: str
    conf_per_pixel: bool
    cons_average: str
    rampup: int
    bn_stats_from_unlabelled: bool
    unsup_batch_ratio: int
    teacher_alpha: float
    teacher_alpha_warmup: bool

    def check(self):
        self.require(self.perturbation in catalog.method_names(), "perturbation",
                     f"choose one of {', '.join(catalog.method_names())}")
        for field in ("cons_weight", "sup_weight", "rampup"):
            self.require(getattr(self, field) >= 0, field, "must be >= 0")
        for field in ("conf_thresh", "teacher_alpha"):
            self.require(0 <= getattr(self, field) <= 1, field, "must lie in [0, 1]")
        self.require(self.cons_average != "confident" or (self.conf_per_pixel
                                                          and self.conf_thresh > 0),
                     "cons_average", "averages over confident pixels: needs --conf_per_pixel and "
                     "--conf_thresh above 0")
        self.require(self.unsup_batch_ratio > 0, "unsup_batch_ratio", "must be positive")
