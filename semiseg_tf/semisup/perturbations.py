"""Perturbations for consistency regularisation: each is one small object the trainer calls.

A perturbation says how many unlabelled streams it reads and what each sample must carry (drawn inside
tf.data, e.g. a box mask), and turns an unlabelled batch into `ConsistencyTerms`: the student's logits on
the perturbed input and the teacher's target in the same frame. The trainer does the rest (loss function,
confidence weighting, weight), so a new perturbation touches only this module and its test.
"""
import dataclasses

import tensorflow as tf

from semiseg_tf import models
from semiseg_tf.augment import boxmask, geometric
from semiseg_tf.data import pipeline
from semiseg_tf.models import precision
from semiseg_tf.semisup import losses

_REGISTRY = {}


def register(name):
    def wrap(cls):
        _REGISTRY[name] = cls
        return cls
    return wrap


def available():
    return sorted(_REGISTRY)


def build(name, **kwargs):
    """The perturbation registered as `name` (e.g. "cutmix"), built with `kwargs`."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown perturbation {name!r}; choose one of {', '.join(available())}")
    return _REGISTRY[name](**kwargs)


@dataclasses.dataclass
class ConsistencyTerms:
    """What the consistency loss needs, all in the student's frame.

    Attributes:
      student_logits: [N, H, W, C], with gradient.
      teacher_logits: [N, H, W, C], no gradient (used by logit-space losses).
      teacher_probs: [N, H, W, C], no gradient: the target.
      teacher_confidence: [N, H, W, 1], max class probability of the target, for confidence weighting.
      loss_mask: [N, H, W, 1], where the loss counts (valid pixels, mask regions).
      panels: images for TensorBoard, name -> [N, H, W, 1 or 3].
    """
    student_logits: tf.Tensor
    teacher_logits: tf.Tensor
    teacher_probs: tf.Tensor
    teacher_confidence: tf.Tensor
    loss_mask: tf.Tensor
    panels: dict


@dataclasses.dataclass
class WeightedTerms:
    """One consistency loss of a perturbation: its weight, a name for pictures ("" for the only
    one), and its terms."""
    weight: float
    name: str
    terms: ConsistencyTerms


class Perturbation:
    """What every perturbation is: the base class of CutMix, Cutout, StandardAugmentation, ICT,
    VAT, FixMatch and UniMatch.

    `num_unlabelled_streams` batches arrive as a tuple of dicts with 'image' (the teacher's view),
    'valid' and, with colour augmentation, 'student_image' (the same crop, colour-jittered).
    """
    num_unlabelled_streams = 0
    # True: each unlabelled sample is two geometric views of one image (`pipeline.augment_pair`).
    paired_views = False
    # Independently colour-jittered and blurred student copies per unlabelled sample
    # (`student_image`, `student_image_2`, ...; see `pipeline.student_view_key`).
    strong_views = 1

    def sample_extras(self, seed, crop_size):
        """Per-sample tensors drawn in tf.data for the first unlabelled stream (a dict)."""
        return {}

    def consistency(self, student, teacher, unlabelled, training=True):
        """The consistency losses of one unlabelled batch: a list of `WeightedTerms`, of which the
        trainer sums weight x loss. A perturbation with one loss implements `terms` instead.
        `training=False` only for pictures: it leaves BN statistics alone."""
        return [WeightedTerms(1.0, "", self.terms(student, teacher, unlabelled, training))]

    def terms(self, student, teacher, unlabelled, training=True):
        """The `ConsistencyTerms` of a perturbation with one loss."""
        raise NotImplementedError


def student_view(batch, view=0):
    """The student's input: its `view`-th colour-augmented (strong) copy if there is one, else the
    teacher's image."""
    return batch.get(pipeline.student_view_key(view), batch["image"])


def teacher_logits(teacher, images, training):
    """The teacher's logits without gradient. The authors run it in training mode (batch-statistics
    batch norm); `training=False` serves the pictures and VAT's `authors_eval_mode`."""
    return tf.stop_gradient(tf.cast(teacher(images, training=training), tf.float32))


def _terms_from_logits(student_logits, target_logits, loss_mask, panels):
    probs = tf.nn.softmax(target_logits, axis=-1)
    return ConsistencyTerms(
        student_logits=student_logits, teacher_logits=target_logits, teacher_probs=probs,
        teacher_confidence=tf.reduce_max(probs, axis=-1, keepdims=True), loss_mask=loss_mask,
        panels=panels)


@register("cutmix")
class CutMix(Perturbation):
    """Mixes two unlabelled batches with box masks; the target is the teacher's logits mixed alike.

    The authors' mix mode: teacher logits on each batch separately, then `la * (1 - M) + lb * M`; student
    on `xa * (1 - M) + xb * M`; the loss counts where the mixed valid mask is 1. Mixing logits or
    probabilities is the same here, as M is 0 or 1.
    """
    num_unlabelled_streams = 2

    def __init__(self, mask_params=boxmask.BoxMaskParams()):
        self.mask_params = mask_params

    def sample_extras(self, seed, crop_size):
        return {"mix_mask": boxmask.box_mask(seed, crop_size[0], crop_size[1], self.mask_params)}

    def target_logits(self, teacher, batch_a, batch_b, training):
        """The teacher's logits on each batch, separately."""
        return (teacher_logits(teacher, batch_a["image"], training),
                teacher_logits(teacher, batch_b["image"], training))

    def panels(self, batch_a, batch_b, mix, mixed_image):
        return {"image_a": batch_a["image"], "image_b": batch_b["image"], "mix_mask": mix,
                "mixed_input": mixed_image}

    def terms(self, student, teacher, unlabelled, training=True):
        batch_a, batch_b = unlabelled
        mix = batch_a["mix_mask"]
        logits_a, logits_b = self.target_logits(teacher, batch_a, batch_b, training)
        mixed_image = student_view(batch_a) * (1 - mix) + student_view(batch_b) * mix
        return _terms_from_logits(
            student(mixed_image, training=training), logits_a * (1 - mix) + logits_b * mix,
            batch_a["valid"] * (1 - mix) + batch_b["valid"] * mix,
            panels=self.panels(batch_a, batch_b, mix, mixed_image))


@register("fixmatch")
class FixMatch(CutMix):
    """Weak-to-strong pseudo-labelling: FixMatch for segmentation, as UniMatch's `fixmatch.py` does it.

    The target network (the EMA teacher, or the student itself with --model=pi, FixMatch's and
    UniMatch v1's choice) predicts on the weak view (`image`: the crop, scale and flip only); the
    student predicts on the strong view (`student_image`: the same crop colour-jittered, greyed and
    blurred by the pipeline's --aug_strong_colour and --aug_strong_blur) with UniMatch's CutMix
    box (`boxmask.PseudoLabelBoxParams`: half the time, 2-40% of the area) pasting the second
    image's strong view in; the targets are mixed by the same box. With --cons_loss_fn=hard_ce,
    --conf_per_pixel and --conf_thresh 0.95 the loss is FixMatch's: cross-entropy against the
    weak view's argmax where its confidence is at least 0.95, summed and divided by the valid
    pixels (--cons_average=valid, as the original).

    As the original, the pasted image's pseudo-labels come from the target network in inference
    mode (moving batch-norm statistics; `mix_source_inference`), the first image's in training
    mode. Unlike the original, the weak view's pass is not one batch with the labelled images, so
    its batch statistics are its own. The step is CutMix's; the box, the targets and the panels
    are FixMatch's.
    """

    def __init__(self, box_params=boxmask.PseudoLabelBoxParams(), mix_source_inference=True):
        self.box_params = box_params
        self.mix_source_inference = bool(mix_source_inference)

    def sample_extras(self, seed, crop_size):
        return {"mix_mask": boxmask.pseudo_label_box_mask(seed, crop_size[0], crop_size[1],
                                                          self.box_params)}

    def target_logits(self, teacher, batch_a, batch_b, training):
        """Target logits on both images' weak views, the pasted image's first."""
        logits_b = self.pasted_target(teacher, batch_b, training)
        logits_a = teacher_logits(teacher, batch_a["image"], training)
        return logits_a, logits_b

    def pasted_target(self, teacher, batch_b, training):
        """The pasted image's target logits: predicted before any training-mode pass of the step
        (so before the first image's pass has moved the batch-norm statistics) and in inference
        mode, as the original does."""
        return teacher_logits(teacher, batch_b["image"],
                              False if self.mix_source_inference else training)

    def panels(self, batch_a, batch_b, box, strong):
        return {"weak_view": batch_a["image"], "strong_view": student_view(batch_a),
                "paste_box": box, "strong_mixed_input": strong}


# UniMatch's feature dropout draws its channels from per-sample uniform noise carried with the
# sample (so a step is the same on one device and on several): up to this many feature maps of up to
# this many channels (DeepLab v3+'s stage 4 has 2048).
FEATURE_NOISE_MAPS, FEATURE_NOISE_CHANNELS = 4, 2048


def feature_dropout(features, uniform, rate):
    """Channel dropout (`nn.Dropout2d`): whole channels of each sample zeroed where its `uniform`
    [N, >= C] draw is below `rate`, the others scaled by 1 / (1 - rate)."""
    channels = features.shape[-1]
    if channels > uniform.shape[-1]:
        raise ValueError(f"feature dropout: a feature map of {channels} channels, more than the "
                         f"{uniform.shape[-1]} the noise holds (FEATURE_NOISE_CHANNELS)")
    keep = tf.cast(uniform[:, :channels] >= rate, features.dtype)[:, None, None, :]
    return features * keep / tf.cast(1.0 - rate, features.dtype)


@register("unimatch")
class UniMatch(FixMatch):
    """UniMatch (Yang et al., CVPR 2023, `unimatch.py`): FixMatch with two strong views and a
    feature-perturbation stream, trained on the same pseudo-labels.

    The two strong views of each unlabelled image are colour-jittered, greyed and blurred
    independently by the pipeline (`strong_views = 2`), each with its own UniMatch box pasting in the
    second image's view of the same number; their targets are the weak views' logits mixed by the
    same box (the pasted image's from inference mode, as in FixMatch). The feature stream takes the
    encoder's features of the weak view (`models.feature_split`), drops half of each map's channels
    (`feature_dropout`) and decodes them; its target is the weak view's own, unmixed. The losses
    weigh 0.25, 0.25 and 0.5 (`weights`); with --sup_weight=0.5 --cons_weight=0.5 the step's loss
    is UniMatch's (loss_x + 0.25 s1 + 0.25 s2 + 0.5 fp) / 2.

    As the original, when the student is its own target (--model=pi) the weak view's prediction and
    the feature stream come from one encoder pass, decoded in one batch (clean and dropped features
    side by side), the prediction without gradient; the two strong views go through the student
    as one batch. With an EMA teacher the weak prediction is the teacher's and the feature stream
    runs the student's encoder on the weak view. As in `FixMatch`, the original's encoder pass also
    holds the labelled images (one batch, so shared batch statistics); here the labelled pass is
    the trainer's own.
    """
    strong_views = 2

    def __init__(self, box_params=boxmask.PseudoLabelBoxParams(), mix_source_inference=True,
                 dropout_rate=0.5, weights=(0.25, 0.25, 0.5)):
        super().__init__(box_params, mix_source_inference)
        self.dropout_rate = float(dropout_rate)
        self.weights = tuple(float(w) for w in weights)

    def sample_extras(self, seed, crop_size):
        seeds = tf.random.experimental.stateless_split(seed, 3)
        return {**self.two_boxes(seeds, crop_size),
                "feature_noise": tf.random.stateless_uniform(
                    [FEATURE_NOISE_MAPS, FEATURE_NOISE_CHANNELS], seeds[2])}

    def two_boxes(self, seeds, crop_size):
        """The strong views' boxes, drawn from `seeds[0]` and `seeds[1]`."""
        height, width = crop_size
        return {"mix_mask": boxmask.pseudo_label_box_mask(seeds[0], height, width, self.box_params),
                "mix_mask_2": boxmask.pseudo_label_box_mask(seeds[1], height, width,
                                                            self.box_params)}

    def feature_stream(self, student, teacher, batch_a, training):
        """(weak-view target logits of the first image, the feature stream's logits)."""
        split = models.feature_split(student)
        weak = batch_a["image"]
        features = split.encode(weak, training)
        if len(features) > FEATURE_NOISE_MAPS:
            raise ValueError(f"feature dropout: {len(features)} feature maps, more than the "
                             f"{FEATURE_NOISE_MAPS} the noise holds (FEATURE_NOISE_MAPS)")
        noise = batch_a["feature_noise"]
        dropped = [feature_dropout(f, noise[:, k], self.dropout_rate) for k, f in enumerate(features)]
        if teacher is not student:
            return (teacher_logits(teacher, weak, training),
                    tf.cast(split.decode(weak, dropped, training), tf.float32))
        count = tf.shape(weak)[0]
        both = split.decode(tf.concat([weak, weak], 0),
                            [tf.concat([f, d], 0) for f, d in zip(features, dropped)], training)
        both = tf.cast(both, tf.float32)
        return tf.stop_gradient(both[:count]), both[count:]

    def consistency(self, student, teacher, unlabelled, training=True):
        batch_a, batch_b = unlabelled
        logits_b = self.pasted_target(teacher, batch_b, training)
        logits_a, feature_logits = self.feature_stream(student, teacher, batch_a, training)
        streams = self.strong_streams(
            lambda images: student(images, training=training), batch_a, batch_b, logits_a,
            logits_b)
        feature_terms = _terms_from_logits(feature_logits, logits_a, batch_a["valid"],
                                           panels={"weak_view": batch_a["image"]})
        streams.append(WeightedTerms(self.weights[2], "features", feature_terms))
        return streams

    def strong_streams(self, student_pass, batch_a, batch_b, logits_a, logits_b):
        """The two strong views' `WeightedTerms`: each view with its own box pasting the second
        image's view of the same number in, through `student_pass` as one batch (view 1's
        images, then view 2's), against the weak views' logits mixed by the same box."""
        boxes = (batch_a["mix_mask"], batch_a["mix_mask_2"])
        strong = [student_view(batch_a, k) * (1 - box) + student_view(batch_b, k) * box
                  for k, box in enumerate(boxes)]
        count = tf.shape(strong[0])[0]
        both = tf.cast(student_pass(tf.concat(strong, 0)), tf.float32)
        streams = []
        for k, (box, logits) in enumerate(zip(boxes, (both[:count], both[count:]))):
            terms = _terms_from_logits(
                logits, logits_a * (1 - box) + logits_b * box,
                batch_a["valid"] * (1 - box) + batch_b["valid"] * box,
                panels={f"strong_view_{k + 1}": student_view(batch_a, k), f"paste_box_{k + 1}": box,
                        f"strong_mixed_input_{k + 1}": strong[k]})
            streams.append(WeightedTerms(self.weights[k], f"strong_{k + 1}", terms))
        return streams


def complementary_dropout(features, uniform, kept):
    """UniMatch V2's complementary channel dropout of one batch holding two views of each image
    (view 1's samples, then view 2's, as `strong_streams` passes them).

    Each channel of a pair goes to one view, doubled, and is zeroed in the other: view 1's mask is
    2 where the pair's `uniform` [N, >= C] draw is below 0.5, else 0 (Binomial(0.5) x 2), view 2's
    is 2 minus it; pairs where `kept` [N] is true keep every channel in both views (mask 1). The
    one mask of a pair scales every feature map (its first C draws for a map of C channels).
    """
    kept = tf.reshape(tf.cast(kept, tf.bool), [-1, 1])
    dropped = []
    for feature in features:
        channels = feature.shape[-1]
        if channels > uniform.shape[-1]:
            raise ValueError(f"complementary dropout: a feature map of {channels} channels, more "
                             f"than the {uniform.shape[-1]} the noise holds (FEATURE_NOISE_CHANNELS)")
        first = 2.0 * tf.cast(uniform[:, :channels] < 0.5, tf.float32)
        first = tf.where(kept, 1.0, first)
        mask = tf.cast(tf.concat([first, 2.0 - first], 0), feature.dtype)
        rank = feature.shape.rank
        dropped.append(feature * tf.reshape(mask, [-1] + [1] * (rank - 2) + [channels]))
    return dropped


@register("unimatch_v2")
class UniMatchV2(UniMatch):
    """UniMatch V2 (Yang et al., TPAMI 2025, `unimatch_v2.py`): one weak view, two strong views,
    the strong views' encoder features dropped complementarily.

    The target network predicts on the weak views in inference mode (the original's
    `model_ema.eval()`), the pasted image's alike. Each strong view has its own colour jitter, blur
    (the pipeline's, `strong_views = 2`) and UniMatch box pasting the second image's view of the
    same number in (`UniMatch.strong_streams`); the two go through the student's encoder as one
    batch, whose features pass `complementary_dropout` (`complementary`; off, the two views are
    plain FixMatch views) before the decoder. The two losses weigh 0.5 each; with --sup_weight=0.5
    --cons_weight=0.5 the step's loss is UniMatch V2's (loss_x + (s1 + s2) / 2) / 2. Its teacher is
    an EMA whose decay warms up, min(1 - 1 / (t + 1), 0.996) (--teacher_alpha_warmup).

    Unlike the original, which keeps exactly half of a GPU's pairs undropped (a random permutation
    of its batch), each pair here is kept with probability `kept_share`, drawn with the sample, so
    that a step is the same on one device and on several.
    """

    def __init__(self, box_params=boxmask.PseudoLabelBoxParams(), complementary=True,
                 kept_share=0.5, weights=(0.5, 0.5)):
        super().__init__(box_params, mix_source_inference=True, weights=tuple(weights) + (0.0,))
        self.complementary = bool(complementary)
        self.kept_share = float(kept_share)

    def sample_extras(self, seed, crop_size):
        seeds = tf.random.experimental.stateless_split(seed, 4)
        return {**self.two_boxes(seeds, crop_size),
                "channel_noise": tf.random.stateless_uniform([FEATURE_NOISE_CHANNELS], seeds[2]),
                "pair_kept": tf.random.stateless_uniform([], seeds[3]) < self.kept_share}

    def student_pass(self, student, batch_a, training):
        """The student on both strong views (one batch), through the dropout when `complementary`."""
        if not self.complementary:
            return lambda images: student(images, training=training)
        split = models.feature_split(student)

        def dropped(images):
            features = complementary_dropout(split.encode(images, training),
                                             batch_a["channel_noise"], batch_a["pair_kept"])
            return split.decode(images, features, training)
        return dropped

    def consistency(self, student, teacher, unlabelled, training=True):
        batch_a, batch_b = unlabelled
        logits_b = teacher_logits(teacher, batch_b["image"], False)
        logits_a = teacher_logits(teacher, batch_a["image"], False)
        return self.strong_streams(self.student_pass(student, batch_a, training), batch_a,
                                   batch_b, logits_a, logits_b)


@register("cutout")
class Cutout(Perturbation):
    """Erases part of the student's input (the authors' zero mode): student on `x * M`, teacher on `x`.

    With the default (inverted) mask, M is 1 inside the box: the box is kept, everything outside it
    becomes 0, which after normalisation is the dataset's mean colour, and the loss counts only inside
    the box. `--boxmask_no_invert` makes M 0 inside the box, which erases the box instead.
    """
    num_unlabelled_streams = 1

    def __init__(self, mask_params=boxmask.BoxMaskParams(prop_range=(0.0, 1.0))):
        self.mask_params = mask_params

    def sample_extras(self, seed, crop_size):
        return {"mix_mask": boxmask.box_mask(seed, crop_size[0], crop_size[1], self.mask_params)}

    def terms(self, student, teacher, unlabelled, training=True):
        (batch,) = unlabelled
        mask = batch["mix_mask"]
        cut_image = student_view(batch) * mask
        return _terms_from_logits(
            student(cut_image, training=training), teacher_logits(teacher, batch["image"], training),
            batch["valid"] * mask,
            panels={"image": batch["image"], "mask": mask, "cut_input": cut_image})


@register("augment")
class StandardAugmentation(Perturbation):
    """Standard-augmentation consistency: teacher and student see two geometric views of one
    image; the teacher's probabilities (softmax first, then the warp), logits and valid mask are warped
    into the student's frame by the exact teacher-to-student matrix, bilinear with zero outside. The
    loss counts where both views' valid masks are 1 (the warped one is fractional at its edges).
    """
    num_unlabelled_streams = 1
    paired_views = True

    def terms(self, student, teacher, unlabelled, training=True):
        (batch,) = unlabelled
        matrix = batch["teacher_to_student"]
        size = tuple(batch["student_image"].shape[1:3])
        logits = teacher_logits(teacher, batch["image"], training)
        probs = geometric.warp(tf.nn.softmax(logits, axis=-1), matrix, size, "BILINEAR", 0.0)
        warped_valid = geometric.warp(batch["valid"], matrix, size, "BILINEAR", 0.0)
        return ConsistencyTerms(
            student_logits=student(batch["student_image"], training=training),
            teacher_logits=geometric.warp(logits, matrix, size, "BILINEAR", 0.0),
            teacher_probs=probs,
            teacher_confidence=tf.reduce_max(probs, axis=-1, keepdims=True),
            loss_mask=warped_valid * batch["student_valid"],
            panels={"teacher_view": batch["image"], "student_view": batch["student_image"],
                    "teacher_valid_in_student_frame": warped_valid})


def stateless_beta(seed, alpha, shape=()):
    """Beta(alpha, alpha) from two stateless gamma draws: g1 / (g1 + g2)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    g1 = tf.random.stateless_gamma(shape, seeds[0], alpha)
    g2 = tf.random.stateless_gamma(shape, seeds[1], alpha)
    # Tiny alphas can underflow both gammas to 0; the Beta is then a fair coin between 0 and 1.
    total = g1 + g2
    return tf.where(total > 0, g1 / tf.maximum(total, 1e-30),
                    tf.cast(tf.random.stateless_uniform(shape, seeds[0]) < 0.5, tf.float32))


@register("ict")
class ICT(Perturbation):
    """Interpolation consistency: one Beta(alpha, alpha) factor per sample mixes two batches.

    Student on `(1 - lam) xa + lam xb`; target probabilities `(1 - lam) pa + lam pb` (logit losses use
    the mixed logits); the confidence is the mixed confidences `(1 - lam) max pa + lam max pb`, not the
    confidence of the mixed target; the loss mask is the mixed valid masks.
    """
    num_unlabelled_streams = 2

    def __init__(self, alpha=0.1):
        self.alpha = float(alpha)

    def sample_extras(self, seed, crop_size):
        return {"ict_lambda": tf.reshape(stateless_beta(seed, self.alpha), [1, 1, 1])}

    def terms(self, student, teacher, unlabelled, training=True):
        batch_a, batch_b = unlabelled
        lam = batch_a["ict_lambda"]
        logits_a = teacher_logits(teacher, batch_a["image"], training)
        logits_b = teacher_logits(teacher, batch_b["image"], training)
        probs_a = tf.nn.softmax(logits_a, axis=-1)
        probs_b = tf.nn.softmax(logits_b, axis=-1)
        mixed_image = (1 - lam) * student_view(batch_a) + lam * student_view(batch_b)
        confidence = ((1 - lam) * tf.reduce_max(probs_a, axis=-1, keepdims=True)
                      + lam * tf.reduce_max(probs_b, axis=-1, keepdims=True))
        lam_map = tf.broadcast_to(lam, tf.shape(batch_a["valid"]))
        return ConsistencyTerms(
            student_logits=student(mixed_image, training=training),
            teacher_logits=(1 - lam) * logits_a + lam * logits_b,
            teacher_probs=(1 - lam) * probs_a + lam * probs_b,
            teacher_confidence=confidence,
            loss_mask=(1 - lam) * batch_a["valid"] + lam * batch_b["valid"],
            panels={"image_a": batch_a["image"], "image_b": batch_b["image"], "lambda": lam_map,
                    "mixed_input": mixed_image})


def _normalise_per_sample(vectors):
    """Unit L2 norm per sample, scale-invariantly: dividing by the max first keeps tiny gradients from
    underflowing when squared (ENVIRONMENT.md)."""
    vectors = tf.convert_to_tensor(vectors, tf.float32)
    axes = list(range(1, vectors.shape.rank))
    vectors = vectors / (tf.reduce_max(tf.abs(vectors), axis=axes, keepdims=True) + 1e-30)
    return vectors / (tf.sqrt(tf.reduce_sum(tf.square(vectors), axis=axes, keepdims=True)) + 1e-12)


def _magnitude_picture(perturbation):
    """|perturbation| summed over channels, scaled to [0, 1] per sample, for the panels."""
    magnitude = tf.reduce_sum(tf.abs(perturbation), axis=-1, keepdims=True)
    return magnitude / (tf.reduce_max(magnitude, axis=[1, 2, 3], keepdims=True) + 1e-12)


def _sqrt_elements(images):
    """sqrt(C H W) of a batch of images: the norm of a per-element unit change of one image."""
    return tf.sqrt(tf.cast(tf.reduce_prod(tf.shape(images)[1:]), tf.float32))


def adaptive_radius(images):
    """Half the L2 norm of the image's central differences (step 2) along y and x, per sample
    (the supplement's adaptive radius): a radius that follows the image's own variation. [N, 1, 1, 1]."""
    dy = images[:, 2:, :, :] - images[:, :-2, :, :]
    dx = images[:, :, 2:, :] - images[:, :, :-2, :]
    total = tf.reduce_sum(tf.square(dy), axis=[1, 2, 3]) + tf.reduce_sum(tf.square(dx), axis=[1, 2, 3])
    return tf.reshape(0.5 * tf.sqrt(total), [-1, 1, 1, 1])


@register("vat")
class VAT(Perturbation):
    """Virtual adversarial training, mean-teacher variant.

    The adversarial direction is the authors' one power iteration: the gradient, at a probe `d = xi r`
    (r a random unit direction per sample), of the distance D between the direction network's outputs
    on `x_teacher` and on `x_student + d`, normalised. The authors' probe, xi = 1e-6 H W / 1000
    (`authors_probe`; 1.9e-7 per element at 321x321), is near float32 resolution: through a trained
    network its direction has cosine 0.15-0.74 with the first-order one (BENCHMARKS.md, measured by
    benchmarks/vat_probe_cosine.py). The probe here is `probe_scale * sqrt(C H W)`: each element moves by
    about `probe_scale` (1% of a normalised image's spread by default), small enough for the
    first-order regime, large enough to be well above rounding. (An exact Hessian-vector product
    by double backpropagation is not an option: TF defines no second derivative for bilinear
    resizing, which every segmentation network uses.) The probe runs inside the training step's
    tape on its own `tf.GradientTape`, with the direction network in inference mode (batch norm neither
    uses batch statistics nor updates its moving ones), so the student's statistics are updated once
    per step, by its pass on the adversarial input. Under --mixed_precision the probe's passes
    compute in float32 (`models.precision.in_float32`); the adversarial pass is in low precision.
    """
    num_unlabelled_streams = 1

    def __init__(self, radius=0.5, adaptive_radius=False, dir_from_student=False, loss_fn="kld",
                 authors_eval_mode=False, probe_scale=1e-2, authors_probe=False):
        self.radius = float(radius)
        self.adaptive_radius = bool(adaptive_radius)
        self.dir_from_student = bool(dir_from_student)
        self.distance = losses.CONSISTENCY_LOSSES[loss_fn]
        self.authors_eval_mode = bool(authors_eval_mode)
        self.probe_scale = float(probe_scale)
        self.authors_probe = bool(authors_probe)

    def sample_extras(self, seed, crop_size):
        return {"vat_noise": tf.random.stateless_normal(tuple(crop_size) + (3,), seed)}

    def direction(self, network, teacher_image, noise, student_image=None):
        """Unit adversarial direction per sample, [N, H, W, 3]; `student_image` None: the student sees
        `teacher_image`."""
        student_image = teacher_image if student_image is None else student_image
        # In float32 even when the network computes in bfloat16 or float16: a probe moving each
        # element by ~1% is about one bfloat16 step of a normalised image, so in low precision
        # the finite difference would be rounding noise.
        with precision.in_float32(network):
            target_logits = tf.stop_gradient(tf.cast(network(teacher_image, training=False),
                                                     tf.float32))
            target_probs = tf.nn.softmax(target_logits, axis=-1)
            probe = _normalise_per_sample(noise) * self.probe_norm(student_image)
            with tf.GradientTape() as tape:
                tape.watch(probe)
                logits = tf.cast(network(student_image + probe, training=False), tf.float32)
                distance = tf.reduce_sum(self.distance(logits, target_logits, target_probs))
        return tf.stop_gradient(_normalise_per_sample(tape.gradient(distance, probe)))

    def probe_norm(self, images):
        """The probe's L2 norm per sample: `probe_scale * sqrt(C H W)`, or the authors'
        1e-6 H W / 1000 (`authors_probe`)."""
        if self.authors_probe:
            shape = tf.cast(tf.shape(images), images.dtype)
            return 1e-6 * shape[1] * shape[2] / 1000.0
        return self.probe_scale * _sqrt_elements(images)

    def terms(self, student, teacher, unlabelled, training=True):
        (batch,) = unlabelled
        teacher_image, student_image = batch["image"], student_view(batch)
        network = student if self.dir_from_student else teacher
        direction = self.direction(network, teacher_image, batch["vat_noise"],
                                   batch.get("student_image"))
        if self.adaptive_radius:
            radius = self.radius * adaptive_radius(student_image)
        else:
            radius = self.radius * _sqrt_elements(student_image)
        adversarial = student_image + radius * direction
        # The authors' bug: the direction network stays in inference mode after the probe.
        student_training = training and not (self.authors_eval_mode and self.dir_from_student)
        teacher_training = training and not (self.authors_eval_mode and not self.dir_from_student)
        return _terms_from_logits(
            student(adversarial, training=student_training),
            teacher_logits(teacher, teacher_image, teacher_training), batch["valid"],
            panels={"image": batch["image"], "adversarial_input": adversarial,
                    "perturbation": _magnitude_picture(radius * direction)})
