"""The objects of a run, built from its `Config`: the data source, the perturbation, the input
pipeline's settings and the MeanTeacher model."""
import sys

import keras

from semiseg_tf import catalog, models
from semiseg_tf.errors import ConfigError, WeightsError
from semiseg_tf.data import base, native, pipeline, prepared, synthetic
from semiseg_tf.models import precision, weights
from semiseg_tf.semisup import mean_teacher
# Imports every method that the catalog names (build_perturbation finds them there).
from semiseg_tf.semisup import methods  # noqa: F401


def build_source(cfg, out=sys.stderr):
    """The data source of `cfg.data.dataset`; file-based ones are listed, checked and prepared
    (once)."""
    native.set_max_image_pixels(cfg.limits.max_image_pixels)
    data, labelled = cfg.data, cfg.labelled
    if data.dataset == "synthetic":
        s = cfg.synthetic
        return synthetic.SyntheticSource(s.num_train, s.num_val, s.image_size, s.seed,
                                         s.representative_split, s.rare_class, s.rare_keep)
    return prepared.build_prepared_source(
        data.dataset, data.data_dir, data.prepared_dir, n_sup=labelled.n_sup, n_val=data.n_val,
        val_seed=data.val_seed, split_file=labelled.split_file, num_classes=data.num_classes,
        mask_values=data.mask_values, workers=data.prepare_workers or None, out=out)


def build_perturbation(cfg):
    """The consistency method of `cfg.method.perturbation`, made from the run's options."""
    entry = catalog.method(cfg.method.perturbation)
    return catalog.load(entry.builder).from_config(cfg)


def pipeline_params(cfg):
    """The input pipeline's settings of a run: batch, seed, augmentation."""
    return pipeline.PipelineParams(
        batch_size=cfg.training.batch_size, seed=cfg.training.seed,
        geometric=cfg.augmentation.geometric_params(),
        unlabelled_batch_ratio=cfg.method.unsup_batch_ratio,
        **cfg.strong_augmentation.student_view(cfg.augmentation.crop_size))


def build_model(cfg, num_classes, rgb_mean=base.IMAGENET_MEAN, rgb_std=base.IMAGENET_STD,
                class_weights=None, pixels=native.PHOTO):
    """The MeanTeacher model, compiled (so ready to train). Call inside the strategy's scope.

    `rgb_mean`, `rgb_std`: the input normalisation, one value per band. Pretrained weights are
    adapted to it for photos; for other images (`pixels`), whose bands are standardised by their
    own statistics, to ImageNet's, the first layer's filters then spread over the bands
    (weights.adapt_rgb_kernel). `class_weights`: the supervised loss's, as
    `class_weights.for_run` gives them.
    """
    opt, net, method = cfg.optimiser, cfg.network, cfg.method
    precision_policy = cfg.distribution.mixed_precision
    optimizer = grouped_optimizer = opt.build(cfg.training.steps)
    if precision_policy == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    options = dict(freeze_bn=net.freeze_bn, deeplab2_aspp_two_branches=net.deeplab2_aspp_two_branches)
    with precision.building_in(precision_policy):
        student = models.build(net.arch, num_classes, bands=pixels.bands, **options)
        teacher = student if method.model == "pi" else models.build(
            net.arch, num_classes, bands=pixels.bands, **options)
    if net.backbone_weights:
        # Into the student only: `compile` makes the teacher its copy.
        fold_mean, fold_std = ((rgb_mean, rgb_std) if pixels.photo
                               else (base.IMAGENET_MEAN, base.IMAGENET_STD))
        try:
            weights.load_backbone_weights(student, net.backbone_weights, fold_mean, fold_std,
                                          kind=catalog.network(net.arch).weights)
        except WeightsError as error:
            # The library's message starts with the path; the flag that gave it goes first.
            raise WeightsError(f"--backbone_weights={error}") from None
    if net.freeze_backbone:
        freeze_backbone(student, teacher, net.arch)
    model = mean_teacher.MeanTeacher(
        student=student,
        teacher=teacher,
        perturbation=build_perturbation(cfg) if method.cons_weight > 0 else None,
        cons_weight=method.cons_weight, conf_thresh=method.conf_thresh,
        teacher_alpha=method.teacher_alpha, teacher_alpha_warmup=method.teacher_alpha_warmup,
        cons_loss_fn=method.cons_loss_fn,
        weight_decay=opt.sgd_weight_decay if opt.opt_type == "sgd" else 0.0,
        conf_per_pixel=method.conf_per_pixel, rampup_steps=method.rampup,
        unsup_batch_ratio=method.unsup_batch_ratio,
        bn_stats_from_unlabelled=method.bn_stats_from_unlabelled,
        skip_nonfinite=cfg.training.on_nonfinite == "skip", sup_weight=method.sup_weight,
        cons_average=method.cons_average, rgb_mean=rgb_mean, rgb_std=rgb_std,
        class_weights=class_weights,
        ohem_thresh=cfg.supervised.ohem_thresh, ohem_min_kept=cfg.supervised.ohem_min_kept)
    model.compile(optimizer=optimizer, jit_compile=cfg.distribution.jit_compile)
    backbone = models.backbone_of(student)
    if backbone is not None:
        grouped_optimizer.scale_learning_rate(backbone.trainable_variables, opt.backbone_lr_scale)
    if opt.deeplab2_authors_repeated_updates:
        grouped_optimizer.repeat_updates(models.deeplab_v2.authors_update_multiplicities(student),
                                         coupled_weight_decay=model.weight_decay)
    return model


def freeze_backbone(student, teacher, arch):
    """--freeze_backbone: the backbones of both networks made non-trainable, alike, so the two
    list their weights in the same order for the EMA (Keras lists trainable weights first)."""
    for network in {id(student): student, id(teacher): teacher}.values():
        backbone = models.backbone_of(network)
        if backbone is None:
            raise ConfigError(f"--freeze_backbone: --arch={arch} has no pretrained backbone to "
                              "freeze")
        backbone.trainable = False
