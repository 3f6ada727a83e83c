"""Flags of the semi-supervised method: mean teacher or Pi, the perturbation, the loss."""
from absl import flags

from semiseg_tf.options import Topic

# semiseg_tf.semisup.losses.CONSISTENCY_LOSSES's names (a test holds them equal), named here so that
# --help does not import TensorFlow.
CONSISTENCY_LOSSES = ("bce", "hard_ce", "kld", "logits_smoothl1", "logits_var", "var")

TOPIC = Topic("Method and perturbation", __name__)

TOPIC.define("enum", "model", "mean_teacher", ["mean_teacher", "pi"],
        "'mean_teacher': targets from an EMA teacher, which is what gets evaluated; 'pi': the "
        "student is its own teacher (targets without gradient), and the student is evaluated.")
TOPIC.define("string", "perturbation", "cutmix", "Consistency perturbation: cutmix (two images "
        "mixed by box masks), cutout (student sees a box-masked image), augment (teacher and "
        "student see differently augmented crops), ict (mixup of two images by a Beta factor), vat "
        "(virtual adversarial), fixmatch (hard pseudo-labels from the weak view train the strong "
        "view, with UniMatch's CutMix box), unimatch (fixmatch with two strong views and a stream "
        "of the weak view's encoder features with half their channels dropped; needs a network "
        "with an encoder/decoder split). Run fixmatch and unimatch from a recipe "
        "(flags/demo/, flags/beyond/): it sets the strong view, the loss and its averaging. Unused "
        "when --cons_weight=0.")
TOPIC.define("float", "cons_weight", 1.0, "Weight of the consistency loss; 0 trains the supervised "
        "baseline (through the same trainer, teacher still evaluated).")
TOPIC.define("float", "sup_weight", 1.0, "Weight of the supervised loss (FixMatch and UniMatch "
        "average the two losses: --sup_weight=0.5 --cons_weight=0.5).")
TOPIC.define("float", "conf_thresh", 0.97, "Teacher confidence threshold: the consistency loss is "
        "scaled by the share of batch pixels whose teacher max-probability is at least this. 0 "
        "disables. Also spelt --pseudo_label_thresh (FixMatch's 0.95, with --conf_per_pixel).")
TOPIC.define("enum", "cons_loss_fn", "var", list(CONSISTENCY_LOSSES),
        "Consistency loss per pixel, summed over classes (SPEC 2.3): var = squared difference of "
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
TOPIC.define("string", "mask_prop_range", "0.5", "Box mask area fraction: one value 'p' or a range "
        "'a:b' drawn uniformly (CutMix: 0.5).")
TOPIC.define("integer", "boxmask_n_boxes", 1, "Boxes per mask, combined by xor, each of area 1/n of"
        " the drawn fraction (3 for full-size Cityscapes crops, supplement D.3).")
TOPIC.define("boolean", "boxmask_fixed_aspect_ratio", False, "Boxes take the crop's aspect ratio "
        "instead of a random one.")
TOPIC.define("boolean", "boxmask_by_size", False, "--mask_prop_range gives side fractions, not "
        "area.")
TOPIC.define("boolean", "boxmask_outside_bounds", False, "Box centres may lie anywhere; boxes "
        "crossing the edge are clipped.")
TOPIC.define("boolean", "boxmask_authors_outside_bounds", False, "With --boxmask_outside_bounds, "
        "reproduce the authors' bug: boxes crossing the top or left edge vanish (a negative slice "
        "start) instead of being clipped.")
TOPIC.define("boolean", "boxmask_no_invert", False, "Mask is 0 inside the boxes instead of 1 "
        "(Cutout then erases the box instead of keeping only the box).")
TOPIC.define("float", "ict_alpha", 0.1, "ICT: the Beta(alpha, alpha) distribution of the mixing "
        "factor, one per sample.")
TOPIC.define("float", "vat_radius", 0.5, "VAT: radius of the adversarial perturbation, times sqrt(C"
        " H W) (fixed) or times the image's own variation (--adaptive_vat_radius).")
TOPIC.define("boolean", "adaptive_vat_radius", False, "VAT: radius scaled per image by half the L2 "
        "norm of its central differences (SPEC 2.7; the paper recommends it with radius 1).")
TOPIC.define("boolean", "vat_dir_from_student", False, "VAT: find the adversarial direction with "
        "the student instead of the teacher.")
TOPIC.define("float", "vat_probe_scale", 1e-2, "VAT: size of the power iteration's probe, per image"
        " element (its norm is this times sqrt(C H W)). It must stay well above float32 rounding and "
        "well below the radius: the authors' 1e-6 H W / 1000 (--vat_authors_probe) is not, and "
        "through a trained network its direction is far from the first-order one (BENCHMARKS.md).")
TOPIC.define("boolean", "vat_authors_probe", False, "VAT: probe at the authors' norm, 1e-6 H W / "
        "1000 per sample (1.03e-4 at 321x321), instead of --vat_probe_scale: the paper's VAT "
        "baseline as it was run (BENCHMARKS.md measures how far its direction is from the exact "
        "one).")
TOPIC.define("boolean", "vat_authors_eval_mode", False, "VAT: reproduce the authors' bug (SPEC "
        "2.7): the direction network is left in inference mode, so the teacher's targets (or, with "
        "--vat_dir_from_student, the student's consistency pass) use moving batch-norm statistics. "
        "The supervised pass keeps batch statistics here.")
TOPIC.define("float", "pseudo_label_box_prob", 0.5, "FixMatch and UniMatch: probability that a "
        "strong view gets a CutMix box pasting in the second image (UniMatch's 0.5).")
TOPIC.define("string", "pseudo_label_box_area", "0.02:0.4", "FixMatch and UniMatch: the box's area "
        "as a fraction of the crop, drawn uniformly from 'a:b' (UniMatch's 0.02:0.4).")
TOPIC.define("string", "pseudo_label_box_ratio", "0.3:3.3333333333333335", "FixMatch and "
        "UniMatch: the box's height / width ratio squared, drawn uniformly from 'a:b' (UniMatch's "
        "0.3:1/0.3).")
TOPIC.define("boolean", "pseudo_label_mix_inference", True, "FixMatch and UniMatch: the pasted "
        "image's pseudo-labels come from the target network in inference mode, before the step's "
        "training-mode passes, as the original code does; --nopseudo_label_mix_inference predicts "
        "them in training mode.")
TOPIC.define("float", "unimatch_dropout", 0.5, "UniMatch: the share of each feature map's channels "
        "its feature stream drops.")
TOPIC.define("string", "unimatch_weights", "0.25,0.25,0.5", "UniMatch: the weights of its three "
        "consistency losses, the two strong views and the feature stream.")

# Other names of flags, listed in --help beside them: FixMatch's name for the threshold of its
# pseudo-labels is the same flag as the confidence threshold.
ALIASES = {"pseudo_label_thresh": "conf_thresh"}
for _alias, _flag in ALIASES.items():
    flags.DEFINE_alias(_alias, _flag, module_name=TOPIC.module)
