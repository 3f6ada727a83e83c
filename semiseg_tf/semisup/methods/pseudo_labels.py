"""Weak-to-strong pseudo-labels: FixMatch, UniMatch and UniMatch V2."""
import tensorflow as tf

from semiseg_tf import models
from semiseg_tf.augment import boxmask
from semiseg_tf.semisup.methods.base import (Perturbation, WeightedTerms, box_pasted_terms,
                                             student_view, teacher_logits, terms_from_logits)


class FixMatch(Perturbation):
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
    its batch statistics are its own.
    """
    num_unlabelled_streams = 2

    def __init__(self, box_params=boxmask.PseudoLabelBoxParams(), mix_source_inference=True):
        self.box_params = box_params
        self.mix_source_inference = bool(mix_source_inference)

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.pseudo_labels.box_params(), cfg.pseudo_labels.mix_inference)

    def sample_extras(self, seed, crop_size):
        return {"mix_mask": boxmask.pseudo_label_box_mask(seed, crop_size[0], crop_size[1],
                                                          self.box_params)}

    def terms(self, student, teacher, unlabelled, training=True):
        batch_a, batch_b = unlabelled
        box = batch_a["mix_mask"]
        logits_a, logits_b = self.target_logits(teacher, batch_a, batch_b, training)
        return box_pasted_terms(
            student, batch_a, batch_b, logits_a, logits_b, box, training,
            panels=lambda strong: {"weak_view": batch_a["image"],
                                   "strong_view": student_view(batch_a), "paste_box": box,
                                   "strong_mixed_input": strong})

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


def two_boxes(seeds, crop_size, box_params):
    """The two strong views' boxes, drawn from `seeds[0]` and `seeds[1]`."""
    height, width = crop_size
    return {"mix_mask": boxmask.pseudo_label_box_mask(seeds[0], height, width, box_params),
            "mix_mask_2": boxmask.pseudo_label_box_mask(seeds[1], height, width, box_params)}


def strong_streams(student_pass, batch_a, batch_b, logits_a, logits_b, weights):
    """The two strong views' `WeightedTerms`, weighing `weights[0]` and `weights[1]`: each view
    with its own box pasting the second image's view of the same number in, through
    `student_pass` as one batch (view 1's images, then view 2's), against the weak views' logits
    mixed by the same box."""
    boxes = (batch_a["mix_mask"], batch_a["mix_mask_2"])
    strong = [student_view(batch_a, k) * (1 - box) + student_view(batch_b, k) * box
              for k, box in enumerate(boxes)]
    count = tf.shape(strong[0])[0]
    both = tf.cast(student_pass(tf.concat(strong, 0)), tf.float32)
    streams = []
    for k, (box, logits) in enumerate(zip(boxes, (both[:count], both[count:]))):
        terms = terms_from_logits(
            logits, logits_a * (1 - box) + logits_b * box,
            batch_a["valid"] * (1 - box) + batch_b["valid"] * box,
            panels={f"strong_view_{k + 1}": student_view(batch_a, k), f"paste_box_{k + 1}": box,
                    f"strong_mixed_input_{k + 1}": strong[k]})
        streams.append(WeightedTerms(weights[k], f"strong_{k + 1}", terms))
    return streams


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

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.pseudo_labels.box_params(), cfg.pseudo_labels.mix_inference,
                   cfg.unimatch.dropout, cfg.unimatch.weights)

    def sample_extras(self, seed, crop_size):
        seeds = tf.random.experimental.stateless_split(seed, 3)
        return {**two_boxes(seeds, crop_size, self.box_params),
                "feature_noise": tf.random.stateless_uniform(
                    [FEATURE_NOISE_MAPS, FEATURE_NOISE_CHANNELS], seeds[2])}

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
        streams = strong_streams(lambda images: student(images, training=training), batch_a,
                                 batch_b, logits_a, logits_b, self.weights)
        feature_terms = terms_from_logits(feature_logits, logits_a, batch_a["valid"],
                                           panels={"weak_view": batch_a["image"]})
        streams.append(WeightedTerms(self.weights[2], "features", feature_terms))
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


class UniMatchV2(Perturbation):
    """UniMatch V2 (Yang et al., TPAMI 2025, `unimatch_v2.py`): one weak view, two strong views,
    the strong views' encoder features dropped complementarily.

    The target network predicts on the weak views in inference mode (the original's
    `model_ema.eval()`), the pasted image's alike. Each strong view has its own colour jitter, blur
    (the pipeline's, `strong_views = 2`) and UniMatch box pasting the second image's view of the
    same number in (`strong_streams`); the two go through the student's encoder as one
    batch, whose features pass `complementary_dropout` (`complementary`; off, the two views are
    plain FixMatch views) before the decoder. The two losses weigh 0.5 each; with --sup_weight=0.5
    --cons_weight=0.5 the step's loss is UniMatch V2's (loss_x + (s1 + s2) / 2) / 2. Its teacher is
    an EMA whose decay warms up, min(1 - 1 / (t + 1), 0.996) (--teacher_alpha_warmup).

    Unlike the original, which keeps exactly half of a GPU's pairs undropped (a random permutation
    of its batch), each pair here is kept with probability `kept_share`, drawn with the sample, so
    that a step is the same on one device and on several.
    """
    num_unlabelled_streams = 2
    strong_views = 2

    def __init__(self, box_params=boxmask.PseudoLabelBoxParams(), complementary=True,
                 kept_share=0.5, weights=(0.5, 0.5)):
        self.box_params = box_params
        self.complementary = bool(complementary)
        self.kept_share = float(kept_share)
        self.weights = tuple(float(w) for w in weights)

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.pseudo_labels.box_params(), cfg.unimatch.complementary,
                   cfg.unimatch.kept_share)

    def sample_extras(self, seed, crop_size):
        seeds = tf.random.experimental.stateless_split(seed, 4)
        return {**two_boxes(seeds, crop_size, self.box_params),
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
        return strong_streams(self.student_pass(student, batch_a, training), batch_a, batch_b,
                              logits_a, logits_b, self.weights)


