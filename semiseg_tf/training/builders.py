"""The objects of a run, built from its `Config`: the data source, the perturbation, the input
pipeline's settings and the MeanTeacher model."""
import sys

import keras

from semiseg_tf import models
from semiseg_tf.augment import boxmask, colour, geometric
from semiseg_tf.data import base, native, pipeline, prepared, synthetic
from semiseg_tf.models import precision, weights
from semiseg_tf.semisup import mean_teacher, optim, perturbations


def build_source(cfg, out=sys.stderr):
    """The data source of `cfg.dataset`; file-based ones are listed, checked and prepared (once)."""
    native.set_max_image_pixels(cfg.max_image_pixels)
    if cfg.dataset == "synthetic":
        return synthetic.SyntheticSource(cfg.synthetic_num_train, cfg.synthetic_num_val,
                                         cfg.synthetic_image_size, cfg.synthetic_seed,
                                         cfg.synthetic_representative_split)
    return prepared.build_prepared_source(
        cfg.dataset, cfg.data_dir, cfg.prepared_dir, n_sup=cfg.n_sup, n_val=cfg.n_val,
        val_seed=cfg.val_seed, split_file=cfg.split_file, num_classes=cfg.num_classes,
        mask_values=cfg.mask_values,
        workers=cfg.prepare_workers or None, out=out)


def build_perturbation(cfg):
    mask_params = boxmask.BoxMaskParams(
        prop_range=cfg.mask_prop_range, n_boxes=cfg.boxmask_n_boxes,
        random_aspect_ratio=not cfg.boxmask_fixed_aspect_ratio, by_size=cfg.boxmask_by_size,
        within_bounds=not cfg.boxmask_outside_bounds, invert=not cfg.boxmask_no_invert,
        authors_outside_bounds=cfg.boxmask_authors_outside_bounds)
    box_params = boxmask.PseudoLabelBoxParams(
        prob=cfg.pseudo_label_box_prob, area_range=cfg.pseudo_label_box_area,
        ratio_range=cfg.pseudo_label_box_ratio)
    pseudo_labels = dict(box_params=box_params,
                         mix_source_inference=cfg.pseudo_label_mix_inference)
    options = {
        "cutmix": dict(mask_params=mask_params),
        "fixmatch": pseudo_labels,
        "unimatch": dict(pseudo_labels, dropout_rate=cfg.unimatch_dropout,
                         weights=cfg.unimatch_weights),
        "cutout": dict(mask_params=mask_params),
        "ict": dict(alpha=cfg.ict_alpha),
        "vat": dict(radius=cfg.vat_radius, adaptive_radius=cfg.adaptive_vat_radius,
                    dir_from_student=cfg.vat_dir_from_student, loss_fn=cfg.cons_loss_fn,
                    authors_eval_mode=cfg.vat_authors_eval_mode, probe_scale=cfg.vat_probe_scale,
                    authors_probe=cfg.vat_authors_probe),
    }
    return perturbations.build(cfg.perturbation, **options.get(cfg.perturbation, {}))


def geometric_params(cfg):
    return geometric.GeometricParams(
        crop_size=cfg.crop_size, scale_hung=cfg.aug_scale_hung, max_scale=cfg.aug_max_scale,
        scale_non_uniform=cfg.aug_scale_non_uniform, rot_mag=cfg.aug_rot_mag, hflip=cfg.aug_hflip,
        vflip=cfg.aug_vflip, hvflip=cfg.aug_hvflip, crop_offset=cfg.aug_offset_range,
        free_scale_rot=cfg.aug_free_scale_rot)


def student_colour_params(cfg):
    if not cfg.aug_strong_colour:
        return None
    return colour.ColourParams(
        brightness=cfg.aug_colour_brightness, contrast=cfg.aug_colour_contrast,
        saturation=cfg.aug_colour_saturation, hue=cfg.aug_colour_hue, prob=cfg.aug_colour_prob,
        greyscale_prob=cfg.aug_colour_greyscale_prob)


def pipeline_params(cfg):
    """The input pipeline's settings of a run: batch, seed, augmentation."""
    return pipeline.PipelineParams(
        batch_size=cfg.batch_size, seed=cfg.seed, geometric=geometric_params(cfg),
        student_colour=student_colour_params(cfg), unlabelled_batch_ratio=cfg.unsup_batch_ratio,
        student_blur_prob=cfg.aug_strong_blur)


def build_model(cfg, num_classes, rgb_mean=base.IMAGENET_MEAN, rgb_std=base.IMAGENET_STD):
    """The MeanTeacher model, compiled (so ready to train). Call inside the strategy's scope.

    `rgb_mean`, `rgb_std`: the input normalisation, which pretrained weights are adapted to.
    """
    schedule = optim.AuthorsSchedule(cfg.lr_sched, cfg.learning_rate, cfg.train_steps,
                                     cfg.lr_poly_power, cfg.lr_step_boundaries, cfg.lr_step_gamma)
    optimizer = optim.build_optimizer(cfg.opt_type, schedule, cfg.sgd_momentum, cfg.sgd_nesterov)
    grouped_optimizer = optimizer
    if cfg.mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    options = dict(freeze_bn=cfg.freeze_bn, deeplab2_aspp_two_branches=cfg.deeplab2_aspp_two_branches)
    with precision.building_in(cfg.mixed_precision):
        student = models.build(cfg.arch, num_classes, **options)
        teacher = student if cfg.model == "pi" else models.build(cfg.arch, num_classes, **options)
    if cfg.backbone_weights:
        # Into the student only: `compile` makes the teacher its copy.
        weights.load_backbone_weights(student, cfg.backbone_weights, rgb_mean, rgb_std)
    model = mean_teacher.MeanTeacher(
        student=student,
        teacher=teacher,
        perturbation=build_perturbation(cfg) if cfg.cons_weight > 0 else None,
        cons_weight=cfg.cons_weight, conf_thresh=cfg.conf_thresh, teacher_alpha=cfg.teacher_alpha,
        cons_loss_fn=cfg.cons_loss_fn,
        weight_decay=cfg.sgd_weight_decay if cfg.opt_type == "sgd" else 0.0,
        conf_per_pixel=cfg.conf_per_pixel, rampup_steps=cfg.rampup,
        unsup_batch_ratio=cfg.unsup_batch_ratio,
        bn_stats_from_unlabelled=cfg.bn_stats_from_unlabelled,
        skip_nonfinite=cfg.on_nonfinite == "skip", sup_weight=cfg.sup_weight,
        cons_average=cfg.cons_average)
    model.compile(optimizer=optimizer, jit_compile=cfg.jit_compile)
    backbone = models.backbone_of(student)
    if backbone is not None:
        grouped_optimizer.scale_learning_rate(backbone.trainable_variables, cfg.backbone_lr_scale)
    if cfg.deeplab2_authors_repeated_updates:
        grouped_optimizer.repeat_updates(models.deeplab_v2.authors_update_multiplicities(student),
                                         coupled_weight_decay=model.weight_decay)
    return model
