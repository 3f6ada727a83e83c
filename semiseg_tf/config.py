"""Training flags, and their validation into one frozen `Config`.

Every flag is defined here with its help text; `from_flags()` checks each value and returns a frozen
dataclass whose fields are the flag names (parsed: `crop_size` is a tuple of ints, and so on). A wrong
value raises `ConfigError` with a one-line message that names the flag.
"""
import dataclasses
import os

from absl import flags

from semiseg_tf import models
from semiseg_tf.semisup import losses, perturbations


class ConfigError(ValueError):
    """A flag has a wrong value; the message names the flag."""


DATASETS = ("synthetic", "pascal_aug", "pascal", "cityscapes", "isic2017", "camvid", "folder")
_NAMES = []
# Flags that change what is logged or when the run pauses, not what is trained: a resumed run may
# give them other values.
RESUMABLE_CHANGES = {"log_every", "image_every", "checkpoint_every", "keep_checkpoints",
                     "eval_batch_size", "stop_at_step"}


def _define(kind, name, default, *args):
    """Defines an absl flag (`args`: enum values then help, or help) and records it as a Config field."""
    _NAMES.append(name)
    getattr(flags, f"DEFINE_{kind}")(name, default, *args)


# --- the run ----------------------------------------------------------------------------------------
_define("string", "workdir", None,
        "Run folder: resolved flags, checkpoints, TensorBoard events, metrics.json. Running the same "
        "command again resumes from its last checkpoint.")
_define("integer", "seed", 0, "Seed of weight initialisation and of every random draw of the input "
        "pipeline (order, augmentation, masks). Same seed, same run.")
_define("enum", "strategy", "default", ["default", "mirrored"],
        "tf.distribute strategy: 'default' (one device) or 'mirrored' (every local GPU, or the CPU "
        "split by --cpu_devices).")
_define("integer", "cpu_devices", 1, "Split the CPU into this many logical devices, so that "
        "--strategy=mirrored can be tried without GPUs. Ignored when a GPU is present.")

# --- data ---------------------------------------------------------------------------------------------
_define("enum", "dataset", "synthetic", list(DATASETS),
        "Data source: synthetic (embedded, generated from --synthetic_seed, no files); pascal_aug "
        "(VOC 2012 + SBD labels, 10,582 training images, the paper's); pascal (VOC 2012, 1,464); "
        "cityscapes; isic2017; camvid (SegNet layout); folder (your own images/ and masks/). The "
        "file-based ones read --data_dir and are prepared once into --prepared_dir (README, Datasets).")
_define("string", "data_dir", None, "The dataset's folder as downloaded: pascal*: the VOC2012 folder "
        "(JPEGImages/, SegmentationClassAug/ or SegmentationClass/); cityscapes: leftImg8bit/ and "
        "gtFine/ or their zips; isic2017: the official training/validation folders or zips; camvid: "
        "train/, trainannot/, val/, ...; folder: images/, masks/ (README).")
_define("string", "prepared_dir", None, "Where the prepared records (sharded TFRecords and a "
        "manifest) are written once and read from. Default: ~/.cache/semiseg_tf/prepared/DATASET-HASH "
        "(HASH from --data_dir; $XDG_CACHE_HOME is honoured). Use a shared folder for multi-machine "
        "jobs.")
_define("integer", "prepare_workers", 0, "Threads that decode and convert images while preparing "
        "(0: one per CPU core).")
_define("integer", "n_sup", 10, "Number of labelled training images (-1: all). Every training image, "
        "labelled or not, is also in the unlabelled set.")
_define("integer", "split_seed", 12345, "Seed of the permutation that picks the labelled subset "
        "(numpy RandomState over the sorted training names, as the authors': their Cityscapes seeds "
        "12345-56789 pick their subsets). pascal_aug ignores it: it takes the shipped Mittal split.")
_define("string", "split_file", None, "A text file of training image names, one per line: "
        "--n_sup=k labels the first k (replaces the seeded draw, and pascal_aug's shipped split).")
_define("integer", "n_val", 0, "Hold out this many labelled training images for validation "
        "(drawn with --val_seed; the official validation set is then evaluated once at the end, as "
        "a test set). 0: validate on the official validation set.")
_define("integer", "val_seed", 131, "Seed of the --n_val hold-out draw.")
_define("integer", "num_classes", 0, "--dataset=folder: the number of classes, when neither "
        "classes.txt nor palette.txt says it (0: the largest id in the masks plus one).")
_define("boolean", "bin_fill_holes", False, "Two-class datasets (ISIC 2017): fill holes in each "
        "predicted foreground region before scoring, as the paper does.")
_define("integer", "synthetic_num_train", 1000, "Synthetic dataset: number of training images.")
_define("integer", "synthetic_num_val", 200, "Synthetic dataset: number of validation images.")
_define("integer", "synthetic_image_size", 64, "Synthetic dataset: side of the square images, px.")
_define("integer", "synthetic_seed", 0, "Synthetic dataset: seed of the scenes (separate from --seed, "
        "so runs with different seeds see the same data).")
_define("boolean", "synthetic_representative_split", True, "Synthetic dataset: of 32 candidate "
        "labelled subsets drawn from --split_seed, take the one whose class pixel shares are nearest the "
        "whole training set's (a random 10-image subset can hold a class at half its share, and the "
        "teacher then spreads that bias). --nosynthetic_representative_split takes the first candidate, "
        "the authors' plain permutation.")
_define("string", "crop_size", "64,64", "Training crop 'H,W' in pixels; images smaller than the crop "
        "are padded with the mean colour and the ignore label.")
_define("boolean", "aug_hflip", False, "Random horizontal flips of training crops.")
_define("boolean", "aug_vflip", False, "Random vertical flips of training crops.")
_define("boolean", "aug_scale_hung", False, "Hung et al.'s random scale in {0.5, 0.6, ..., 1.5} "
        "before cropping (the paper's Pascal VOC augmentation).")
_define("boolean", "aug_hvflip", False, "Random diagonal flips (transpose) of training crops; "
        "needs a square crop.")
_define("float", "aug_max_scale", 1.0, "Rotate/scale/crop augmentation: scale drawn log-uniformly "
        "from [1/s, s] (ISIC: 1.1). Used when --aug_scale_hung is off and this or --aug_rot_mag is "
        "set; borders are mirrored (OpenCV BORDER_REFLECT_101).")
_define("boolean", "aug_scale_non_uniform", False, "Rotate/scale/crop: independent x and y scales.")
_define("float", "aug_rot_mag", 0.0, "Rotate/scale/crop: rotation drawn from U(-m, m) degrees "
        "(ISIC: 45).")
_define("float", "aug_offset_range", 16.0, "Standard-augmentation consistency (--perturbation="
        "augment): the student's crop is offset from the teacher's by up to this many pixels per axis.")
_define("boolean", "aug_free_scale_rot", False, "--perturbation=augment: the student's view gets "
        "its own scale and rotation (otherwise the views differ by offset, flips and Hung scale).")
_define("boolean", "aug_strong_colour", False, "Colour-augment the student's view of unlabelled "
        "images (not the teacher's): torchvision ColorJitter with the --aug_colour_* strengths, then "
        "greyscale (the authors' last commit, SPEC 3.8). Works with every perturbation.")
_define("float", "aug_colour_brightness", 0.4, "Colour augmentation: brightness factor drawn from "
        "U(1-b, 1+b).")
_define("float", "aug_colour_contrast", 0.4, "Colour augmentation: contrast factor from U(1-c, 1+c).")
_define("float", "aug_colour_saturation", 0.4, "Colour augmentation: saturation factor from "
        "U(1-s, 1+s).")
_define("float", "aug_colour_hue", 0.1, "Colour augmentation: hue shift from U(-h, h), in turns "
        "(at most 0.5).")
_define("float", "aug_colour_prob", 0.8, "Colour augmentation: probability of applying the jitter.")
_define("float", "aug_colour_greyscale_prob", 0.2, "Colour augmentation: probability of making "
        "the student's view grey (after the jitter).")

# --- model and method ---------------------------------------------------------------------------------
_define("string", "arch", "small_unet", "Network, by registered name: "
        f"{', '.join(models.available())}. The *_small networks are the same code at CPU-test size.")
_define("string", "backbone_weights", None, "Pretrained backbone weights, a local file (nothing is "
        "downloaded): a keras.applications ResNet-101 weight file (.h5, e.g. resnet101_weights_tf_dim_"
        "ordering_tf_kernels_notop.h5) or the output of `python -m semiseg_tf.models.convert_torchvision` "
        "(torchvision's resnet101-5d3b4d8f.pth, densenet161-8d451a50.pth, MIT CSAIL's deep-stem "
        "resnet101). Loaded into the student before the teacher copies it.")
_define("float", "backbone_lr_scale", 0.1, "Learning rate of the backbone (the pretrained part) as a "
        "fraction of the head's, as in the paper (1 trains all at --learning_rate, which is also what "
        "the authors' DeepLab v3+ code does by mistake). No effect on networks without a backbone.")
_define("boolean", "freeze_bn", True, "Backbone batch norm in inference mode (the authors' "
        "--freeze_bn, in all their DeepLab recipes). DeepLab v2 never trains its backbone's gamma/beta "
        "either way; the others still train them. Their ISIC recipe turns it off: --nofreeze_bn.")
_define("boolean", "deeplab2_aspp_two_branches", False, "DeepLab v2: sum only the dilation-6 and 12 "
        "classifier branches, as the authors' code does by mistake (SPEC 4.2); default all four.")
_define("enum", "model", "mean_teacher", ["mean_teacher", "pi"], "'mean_teacher': targets from an "
        "EMA teacher, which is what gets evaluated; 'pi': the student is its own teacher (targets "
        "without gradient), and the student is evaluated.")
_define("string", "perturbation", "cutmix",
        "Consistency perturbation: cutmix (two images mixed by box masks), cutout (student sees a "
        "box-masked image), augment (teacher and student see differently augmented crops), ict "
        "(mixup of two images by a Beta factor), vat (virtual adversarial). Unused when "
        "--cons_weight=0.")
_define("float", "cons_weight", 1.0, "Weight of the consistency loss; 0 trains the supervised "
        "baseline (through the same trainer, teacher still evaluated).")
_define("float", "conf_thresh", 0.97, "Teacher confidence threshold: the consistency loss is scaled "
        "by the share of batch pixels whose teacher max-probability is at least this. 0 disables.")
_define("enum", "cons_loss_fn", "var", sorted(losses.CONSISTENCY_LOSSES),
        "Consistency loss per pixel, summed over classes (SPEC 2.3): var = squared difference of "
        "probabilities; bce = binary cross-entropy of probabilities; kld = KL(teacher || student); "
        "logits_var = squared difference of logits / sqrt(classes); logits_smoothl1 = Huber of the "
        "logit difference / sqrt(classes). VAT also uses it as the distance that finds its direction.")
_define("boolean", "conf_per_pixel", False, "Confidence weighting per pixel: the loss counts only "
        "where the teacher is confident, instead of being scaled by the batch's confident share.")
_define("integer", "rampup", 0, "Sigmoid ramp-up of the consistency weight, exp(-5 (1 - t)^2), over "
        "this many steps (the authors count epochs; 0: no ramp-up, the paper's default since the "
        "confident share grows by itself).")
_define("boolean", "bn_stats_from_unlabelled", True, "Let the student's and teacher's passes on "
        "unlabelled (perturbed) batches update their batch-norm moving statistics, as the authors' "
        "code does. --nobn_stats_from_unlabelled keeps the statistics of the labelled pass only (the "
        "teacher's are then the EMA of the student's); on the embedded dataset that is worth about 4 "
        "mIoU points to standard-augmentation consistency and less to CutMix (BENCHMARKS.md).")
_define("integer", "unsup_batch_ratio", 1, "Consistency losses per step, each on its own "
        "--batch_size unlabelled batch(es), summed (the authors' repeated backward passes).")
_define("float", "teacher_alpha", 0.99, "EMA decay of the mean teacher, over all weights and "
        "batch-norm moving statistics, applied after every step.")
_define("string", "mask_prop_range", "0.5", "Box mask area fraction: one value 'p' or a range 'a:b' "
        "drawn uniformly (CutMix: 0.5).")
_define("integer", "boxmask_n_boxes", 1, "Boxes per mask, combined by xor, each of area 1/n of the "
        "drawn fraction (3 for full-size Cityscapes crops, supplement D.3).")
_define("boolean", "boxmask_fixed_aspect_ratio", False, "Boxes take the crop's aspect ratio instead "
        "of a random one.")
_define("boolean", "boxmask_by_size", False, "--mask_prop_range gives side fractions, not area.")
_define("boolean", "boxmask_outside_bounds", False, "Box centres may lie anywhere; boxes crossing the "
        "edge are clipped.")
_define("boolean", "boxmask_authors_outside_bounds", False, "With --boxmask_outside_bounds, "
        "reproduce the authors' bug: boxes crossing the top or left edge vanish (a negative slice "
        "start) instead of being clipped.")
_define("boolean", "boxmask_no_invert", False, "Mask is 0 inside the boxes instead of 1 (Cutout "
        "then erases the box instead of keeping only the box).")
_define("float", "ict_alpha", 0.1, "ICT: the Beta(alpha, alpha) distribution of the mixing factor, "
        "one per sample.")
_define("float", "vat_radius", 0.5, "VAT: radius of the adversarial perturbation, times "
        "sqrt(C H W) (fixed) or times the image's own variation (--adaptive_vat_radius).")
_define("boolean", "adaptive_vat_radius", False, "VAT: radius scaled per image by half the L2 norm "
        "of its central differences (SPEC 2.7; the paper recommends it with radius 1).")
_define("boolean", "vat_dir_from_student", False, "VAT: find the adversarial direction with the "
        "student instead of the teacher.")
_define("float", "vat_probe_scale", 1e-2, "VAT: size of the power iteration's probe, per image "
        "element (its norm is this times sqrt(C H W)). The authors' 1e-6 H W / 1000 is float32 "
        "noise; this must stay well above rounding and well below the radius.")
_define("boolean", "vat_authors_eval_mode", False, "VAT: reproduce the authors' bug (SPEC 2.7): "
        "the direction network is left in inference mode, so the teacher's targets (or, with "
        "--vat_dir_from_student, the student's consistency pass) use moving batch-norm statistics. "
        "The supervised pass keeps batch statistics here.")

# --- optimisation -------------------------------------------------------------------------------------
_define("enum", "opt_type", "adam", ["adam", "sgd"], "Optimiser: Adam (PyTorch defaults, no weight "
        "decay) or SGD with momentum.")
_define("float", "learning_rate", 1e-3, "Base learning rate.")
_define("float", "sgd_momentum", 0.9, "SGD momentum.")
_define("boolean", "sgd_nesterov", False, "SGD with Nesterov momentum.")
_define("float", "sgd_weight_decay", 5e-4, "SGD weight decay, added to every gradient as L2 "
        "(PyTorch style, biases and batch norm included).")
_define("enum", "lr_sched", "none", ["none", "poly", "cosine", "stepped"],
        "Learning-rate schedule over --train_steps.")
_define("list", "lr_step_boundaries", [], "Steps at which 'stepped' multiplies the rate by "
        "--lr_step_gamma, e.g. 30000,60000.")
_define("float", "lr_step_gamma", 0.1, "Factor of the 'stepped' schedule.")
_define("float", "lr_poly_power", 0.9, "Power of the 'poly' schedule.")

# --- the loop -----------------------------------------------------------------------------------------
_define("integer", "train_steps", 2000, "Number of optimiser steps.")
_define("integer", "batch_size", 8, "Global batch size of the labelled batch and of each unlabelled "
        "batch (split across replicas).")
_define("integer", "eval_every", 500, "Evaluate the teacher on the validation set every N steps "
        "(and at the end).")
_define("integer", "eval_batch_size", 16, "Validation batch size when all images share one size.")
_define("integer", "log_every", 50, "Print a progress line and write TensorBoard scalars every N "
        "steps.")
_define("integer", "image_every", 500, "Write TensorBoard image panels every N steps (0: never).")
_define("integer", "checkpoint_every", 500, "Save a checkpoint every N steps (and at the end).")
_define("integer", "keep_checkpoints", 2, "Number of most recent checkpoints kept.")
_define("integer", "stop_at_step", 0, "Pause the run after this step (checkpointed) instead of "
        "finishing; the same command with a later or no --stop_at_step continues it. For job "
        "systems with time limits. 0: run to --train_steps.")


def _parse_ints(name, text, count):
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--{name}={text!r}: expected {count} comma-separated integers") from None
    if len(values) != count or min(values) <= 0:
        raise ConfigError(f"--{name}={text!r}: expected {count} positive comma-separated integers")
    return values


def _parse_prop_range(text):
    try:
        parts = tuple(float(v) for v in text.split(":"))
    except ValueError:
        raise ConfigError(f"--mask_prop_range={text!r}: expected 'p' or 'a:b' with numbers") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not 0 <= parts[0] <= parts[1] <= 1:
        raise ConfigError(f"--mask_prop_range={text!r}: expected 0 <= a <= b <= 1")
    return parts


def _require(condition, name, value, message):
    if not condition:
        raise ConfigError(f"--{name}={value}: {message}")


Config = dataclasses.make_dataclass("Config", _NAMES, frozen=True)
Config.__doc__ = "All training flags, validated and parsed; fields are the flag names."


def from_flags(flag_values=flags.FLAGS):
    """Validates the parsed flags into a `Config`; raises `ConfigError` naming the first bad flag."""
    values = {name: flag_values[name].value for name in _NAMES}
    _require(values["workdir"], "workdir", values["workdir"], "a run folder is required")
    values["workdir"] = os.path.abspath(os.path.expanduser(values["workdir"]))
    _require(not os.path.isfile(values["workdir"]), "workdir", values["workdir"],
             "is a file, not a folder")
    for name in ("synthetic_num_train", "synthetic_num_val", "synthetic_image_size", "train_steps",
                 "batch_size", "eval_every", "eval_batch_size", "log_every", "checkpoint_every",
                 "keep_checkpoints", "boxmask_n_boxes", "cpu_devices", "unsup_batch_ratio"):
        _require(values[name] > 0, name, values[name], "must be positive")
    _require(values["image_every"] >= 0, "image_every", values["image_every"], "must be >= 0")
    _require(values["stop_at_step"] >= 0, "stop_at_step", values["stop_at_step"], "must be >= 0")
    _require(values["n_sup"] == -1 or values["n_sup"] > 0, "n_sup", values["n_sup"],
             "must be positive, or -1 for all")
    if values["dataset"] == "synthetic":
        _require(values["n_sup"] <= values["synthetic_num_train"], "n_sup", values["n_sup"],
                 f"more than the {values['synthetic_num_train']} training images "
                 "(--synthetic_num_train)")
    else:
        _require(values["data_dir"], "data_dir", "", f"--dataset={values['dataset']} reads its "
                 "files from --data_dir, the dataset's folder")
        for name in ("data_dir", "prepared_dir", "split_file"):
            if values[name]:
                values[name] = os.path.abspath(os.path.expanduser(values[name]))
        _require(os.path.isdir(values["data_dir"]), "data_dir", values["data_dir"], "no such folder")
        _require(not values["split_file"] or os.path.isfile(values["split_file"]), "split_file",
                 values["split_file"], "no such file")
    for name in ("n_val", "num_classes", "prepare_workers"):
        _require(values[name] >= 0, name, values[name], "must be >= 0")
    values["crop_size"] = _parse_ints("crop_size", values["crop_size"], 2)
    values["mask_prop_range"] = _parse_prop_range(values["mask_prop_range"])
    _require(values["arch"] in models.available(), "arch", values["arch"],
             f"unknown network; choose one of {', '.join(models.available())}")
    multiple = models.input_multiple(values["arch"])
    _require(all(v % multiple == 0 for v in values["crop_size"]), "crop_size",
             ",".join(map(str, values["crop_size"])),
             f"--arch={values['arch']} needs sizes that are multiples of {multiple}")
    if values["dataset"] == "synthetic":
        _require(values["synthetic_image_size"] % multiple == 0, "synthetic_image_size",
                 values["synthetic_image_size"],
                 f"--arch={values['arch']} evaluates full images: needs a multiple of {multiple}")
    _require(values["perturbation"] in perturbations.available(), "perturbation",
             values["perturbation"], f"choose one of {', '.join(perturbations.available())}")
    _require(values["cons_weight"] >= 0, "cons_weight", values["cons_weight"], "must be >= 0")
    _require(0 <= values["conf_thresh"] <= 1, "conf_thresh", values["conf_thresh"],
             "must lie in [0, 1]")
    _require(0 <= values["teacher_alpha"] <= 1, "teacher_alpha", values["teacher_alpha"],
             "must lie in [0, 1]")
    _require(values["aug_max_scale"] >= 1, "aug_max_scale", values["aug_max_scale"],
             "must be >= 1 (scales are drawn from [1/s, s])")
    _require(values["aug_rot_mag"] >= 0, "aug_rot_mag", values["aug_rot_mag"], "must be >= 0")
    _require(values["aug_offset_range"] >= 0, "aug_offset_range", values["aug_offset_range"],
             "must be >= 0")
    _require(not values["aug_hvflip"] or values["crop_size"][0] == values["crop_size"][1],
             "aug_hvflip", "true", "diagonal flips need a square --crop_size")
    _require(values["rampup"] >= 0, "rampup", values["rampup"], "must be >= 0")
    _require(values["ict_alpha"] > 0, "ict_alpha", values["ict_alpha"], "must be positive")
    _require(values["vat_probe_scale"] > 0, "vat_probe_scale", values["vat_probe_scale"],
             "must be positive")
    _require(values["vat_radius"] >= 0, "vat_radius", values["vat_radius"], "must be >= 0")
    for name in ("aug_colour_brightness", "aug_colour_contrast", "aug_colour_saturation"):
        _require(values[name] >= 0, name, values[name], "must be >= 0")
    _require(0 <= values["aug_colour_hue"] <= 0.5, "aug_colour_hue", values["aug_colour_hue"],
             "must lie in [0, 0.5]")
    for name in ("aug_colour_prob", "aug_colour_greyscale_prob"):
        _require(0 <= values[name] <= 1, name, values[name], "must lie in [0, 1]")
    _require(values["learning_rate"] > 0, "learning_rate", values["learning_rate"], "must be positive")
    _require(values["backbone_lr_scale"] >= 0, "backbone_lr_scale", values["backbone_lr_scale"],
             "must be >= 0")
    if values["backbone_weights"]:
        values["backbone_weights"] = os.path.abspath(os.path.expanduser(values["backbone_weights"]))
        _require(os.path.isfile(values["backbone_weights"]), "backbone_weights",
                 values["backbone_weights"], "no such file")
    for name in ("sgd_momentum", "sgd_weight_decay", "lr_step_gamma", "lr_poly_power"):
        _require(values[name] >= 0, name, values[name], "must be >= 0")
    try:
        values["lr_step_boundaries"] = tuple(sorted(int(v) for v in values["lr_step_boundaries"]))
    except ValueError:
        raise ConfigError(f"--lr_step_boundaries={','.join(values['lr_step_boundaries'])}: expected "
                          "comma-separated step numbers") from None
    _require(values["lr_sched"] != "stepped" or values["lr_step_boundaries"], "lr_step_boundaries",
             "", "--lr_sched=stepped needs at least one boundary step")
    return Config(**values)


def default_flag_line(name, flag_values=flags.FLAGS):
    """The flagfile line of a flag at its default value (for run folders written before it existed)."""
    flag = flag_values[name]
    return flag._serialize(flag.default)  # absl's own serialiser, as `Flag.serialize` uses


def to_flagfile_text(flag_values=flags.FLAGS):
    """The training flags as a flagfile, one `--name=value` per line, exactly as given."""
    lines = []
    for name in _NAMES:
        flag = flag_values[name]
        if flag.value is None:
            continue
        lines.append(flag.serialize())
    return "\n".join(lines) + "\n"
