"""The nested Config: one section per topic of flags, each checking its own values."""
import dataclasses

import pytest
from absl import flags

from semiseg_tf import config, errors
from semiseg_tf.options import boxmask, vat


def parsed(tmp_path, *arguments):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["test", f"--workdir={tmp_path / 'run'}", *arguments])
    return config.from_flags()


def test_every_training_flag_is_one_field_of_one_section():
    seen = []
    for name, section in config.SECTIONS.items():
        fields = [f.name for f in dataclasses.fields(section)]
        assert fields == list(section.TOPIC.fields), name      # the topic's flags, in its order
        seen += section.TOPIC.fields.values()
    assert sorted(seen) == sorted(set(seen)) == sorted(config.FLAG_NAMES)


def test_sections_hold_parsed_values_under_their_own_names(tmp_path):
    cfg = parsed(tmp_path, "--mask_prop_range=0.25:0.5", "--train_steps=7", "--vat_radius=2",
                 "--adaptive_vat_radius", "--pseudo_label_box_area=0.1:0.2", "--scales=0.5,1",
                 "--tile_size=32,48", "--lr_step_boundaries=30,10", "--crop_size=32,48")
    assert cfg.boxmask.prop_range == (0.25, 0.5) and cfg.training.steps == 7
    assert (cfg.vat.radius, cfg.vat.adaptive_radius) == (2.0, True)
    assert cfg.pseudo_labels.box_area == (0.1, 0.2) and cfg.inference.scales == (0.5, 1.0)
    assert cfg.inference.tile_size == (32, 48) and cfg.optimiser.lr_step_boundaries == (10, 30)
    assert cfg.augmentation.crop_size == (32, 48)
    assert cfg.run.workdir == str(tmp_path / "run")
    by_flag = cfg.by_flag()
    assert by_flag["mask_prop_range"] == (0.25, 0.5) and by_flag["adaptive_vat_radius"] is True
    assert len(by_flag) == len(config.FLAG_NAMES)


@pytest.mark.parametrize("argument, message", [
    ("--mask_prop_range=0.6:0.2", "--mask_prop_range=0.6:0.2: expected 'a:b' with 0 <= a <= b <= 1"),
    ("--mask_prop_range=x", "--mask_prop_range='x': expected 'a:b'"),
    ("--crop_size=60,60", "--crop_size=60,60: --arch=small_unet needs sizes that are multiples of 16"),
    ("--crop_size=64", "--crop_size='64': expected 2 positive comma-separated integers"),
    ("--opt_type=adamw --adamw_weight_decay=-1", "--adamw_weight_decay=-1.0: must be >= 0"),
    ("--batch_size=0", "--batch_size=0: must be positive"),
    ("--aug_max_scale=0.5", "--aug_max_scale=0.5: must be >= 1"),
    ("--unsup_batch_ratio=0", "--unsup_batch_ratio=0: must be positive"),
    ("--ict_alpha=0", "--ict_alpha=0.0: must be positive"),
    ("--aug_hvflip --crop_size=64,32", "--aug_hvflip=true: diagonal flips need a square --crop_size"),
    ("--backbone_lr_scale=-0.1", "--backbone_lr_scale=-0.1: must be >= 0"),
    ("--backbone_weights=/nonexistent/r101.h5", "--backbone_weights=/nonexistent/r101.h5: no such "
     "file"),
    ("--unimatch_weights=1,2", "--unimatch_weights=1.0,2.0: expected 3 comma-separated weights"),
    ("--pseudo_label_box_area=0:0.5", "--pseudo_label_box_area=0.0:0.5: expected 'a:b' with 0 < a"),
    ("--vat_radius=-1", "--vat_radius=-1.0: must be >= 0"),
    ("--scales=a", "--scales=a: expected comma-separated numbers"),
    ("--n_sup=2000", "--n_sup=2000: more than the 1000 training images"),
    ("--perturbation=mixup", "--perturbation=mixup: choose one of augment, cutmix"),
    ("--arch=unet", "--arch=unet: unknown network"),
    ("--cons_average=confident", "--cons_average=confident: averages over confident pixels"),
    ("--aug_colour_hue=0.7", "--aug_colour_hue=0.7: must lie in [0, 0.5]"),
    ("--aug_strong_blur=2", "--aug_strong_blur=2.0: must lie in [0, 1]"),
    ("--aug_blur_sigma=2,1", "--aug_blur_sigma=2.0,1.0: expected 'LO,HI' with 0 < LO <= HI"),
    ("--aug_blur_sigma=0,1", "--aug_blur_sigma=0.0,1.0: expected 'LO,HI' with 0 < LO <= HI"),
    ("--aug_blur_sigma=1", "--aug_blur_sigma=1.0: expected 'LO,HI'"),
    ("--aug_blur_sigma=0.1,inf", "--aug_blur_sigma=0.1,inf: expected 'LO,HI' with 0 < LO <= HI <= 100"),
    ("--aug_blur_reference_crop=-1", "--aug_blur_reference_crop=-1: must be >= 0"),
    ("--lr_sched=stepped", "--lr_step_boundaries=: --lr_sched=stepped needs at least one"),
    ("--deeplab2_authors_repeated_updates", "--deeplab2_authors_repeated_updates=true: only "
     "DeepLab v2"),
    ("--dataset=folder", "--data_dir=: --dataset=folder reads its files from --data_dir"),
])
def test_a_bad_flag_is_one_line_naming_it(tmp_path, argument, message):
    with pytest.raises(errors.ConfigError) as raised:
        parsed(tmp_path, *argument.split())
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_a_section_made_in_python_checks_itself_and_is_frozen():
    box = boxmask.BoxMask(prop_range=(0.25, 0.5), n_boxes=1, fixed_aspect_ratio=False,
                          by_size=False, outside_bounds=False, authors_outside_bounds=False,
                          no_invert=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        box.n_boxes = 3
    with pytest.raises(errors.ConfigError, match=r"^--boxmask_n_boxes=0: must be positive"):
        dataclasses.replace(box, n_boxes=0)
    with pytest.raises(errors.ConfigError, match=r"^--vat_probe_scale=0: must be positive"):
        vat.Vat(radius=1.0, adaptive_radius=False, dir_from_student=False, probe_scale=0,
                authors_probe=False, authors_eval_mode=False)


@pytest.mark.parametrize("arguments, sigma", [
    ((), (0.1, 2.0)),                                       # as published: pixels of any crop
    (("--aug_blur_reference_crop=518",), (0.1 * 64 / 518, 2.0 * 64 / 518)),
    (("--aug_blur_reference_crop=321", "--aug_blur_sigma=0.5,1", "--crop_size=32,48"),
     (0.5 * 32 / 321, 1.0 * 32 / 321)),                     # the shorter side
])
def test_the_blur_is_sized_to_the_crop_when_given_a_reference_crop(tmp_path, arguments, sigma):
    from semiseg_tf import training
    cfg = parsed(tmp_path, "--aug_strong_blur=0.5", *arguments)
    assert training.pipeline_params(cfg).student_blur_sigma == pytest.approx(sigma, rel=1e-12)
