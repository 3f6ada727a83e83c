"""The catalog: a method and a network defined outside the package train through the command's
path after one `register` line each; incomplete entries are refused; each method reads only the
options its entry names."""
import dataclasses
import json
import os

import keras
import pytest
import tensorflow as tf

from conftest import TINY_RUN, parse_flags
from semiseg_tf import catalog, config, training
from semiseg_tf.models import layers
from semiseg_tf.semisup.methods import base


# A network and a method of a user's own, as docs/layout.md describes them.
def outside_network(num_classes):
    """Two convolutions: normalised images (of the run's bands) -> logits at input resolution."""
    images = layers.image_input()
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(images)
    return keras.Model(images, keras.layers.Conv2D(num_classes, 1)(features), name="outside_net")


class MirrorConsistency(base.Perturbation):
    """The student sees the image mirrored; its logits, mirrored back, follow the teacher's."""
    num_unlabelled_streams = 1
    traced = 0

    def terms(self, student, teacher, unlabelled, training=True):
        MirrorConsistency.traced += 1
        (batch,) = unlabelled
        target = base.teacher_logits(teacher, batch["image"], training)
        mirrored = student(tf.reverse(base.student_view(batch), [2]), training=training)
        return base.terms_from_logits(tf.reverse(mirrored, [2]), target, batch["valid"],
                                      panels={"image": batch["image"]})


@pytest.fixture
def own_catalog(monkeypatch):
    """The catalog as it is, restored after the test (so entries registered here do not leak)."""
    monkeypatch.setattr(catalog, "_NETWORKS", dict(catalog._NETWORKS))
    monkeypatch.setattr(catalog, "_METHODS", dict(catalog._METHODS))


def test_a_method_and_a_network_of_ones_own_train_through_the_commands_path(own_catalog, tmp_path):
    catalog.register(catalog.Network("outside_net", outside_network, "outside"))
    catalog.register(catalog.Method("mirror", MirrorConsistency, "the student sees it mirrored"))
    workdir = tmp_path / "run"
    cfg, text = parse_flags(**{**TINY_RUN, "workdir": str(workdir), "arch": "outside_net",
                               "perturbation": "mirror", "train_steps": 2, "eval_every": 2})
    with open(os.devnull, "w") as quiet:
        result = training.Trainer(cfg, text, out=quiet).run()
    assert result.finished and result.step == 2
    assert MirrorConsistency.traced > 0
    assert "--perturbation=mirror" in (workdir / "flags.txt").read_text()
    assert json.loads((workdir / "run.json").read_text())["network"]["arch"] == "outside_net"
    assert json.loads((workdir / "metrics.json").read_text())["miou"] >= 0


def network_entry(**changes):
    return dataclasses.replace(catalog.Network("net", outside_network, "outside"), **changes)


def method_entry(**changes):
    return dataclasses.replace(catalog.Method("meth", MirrorConsistency, "a summary"), **changes)


@pytest.mark.parametrize("entry, message", [
    (network_entry(name="small_unet"), "registered twice"),
    (network_entry(name="two words"), "must be a Python identifier"),
    (network_entry(builder="semiseg_tf.models.small_unet.build"), "'module:attribute'"),
    (network_entry(family=""), "no family"),
    (network_entry(input_multiple=0), "input_multiple must be a positive integer"),
    (network_entry(weights="url"), "weights must be one of"),
    (method_entry(summary=""), "no summary"),
    (method_entry(needs_feature_split="yes"), "needs_feature_split must be"),
    ("cutmix", "takes a catalog.Network or catalog.Method"),
])
def test_register_refuses_an_incomplete_entry(own_catalog, entry, message):
    with pytest.raises(ValueError, match=message):
        catalog.register(entry)


def test_every_entry_names_a_module_the_package_imports_itself():
    """The catalog imports nothing: each of the package's entries is found in a module that
    semiseg_tf/models/__init__.py or semiseg_tf/semisup/methods/__init__.py imports (a name alone
    is refused, so no dependency hides in a string)."""
    entries = [*map(catalog.network, catalog.network_names()),
               *map(catalog.method, catalog.method_names())]
    for entry in entries:
        module, attribute = entry.builder.split(":")
        assert catalog.load(entry.builder) is getattr(__import__(module, fromlist=["_"]), attribute)
    with pytest.raises(ValueError, match="semiseg_tf.not_a_module is not imported"):
        catalog.load("semiseg_tf.not_a_module:build")


def test_an_unknown_name_is_refused_with_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"unknown network 'unet'; choose one of .*small_unet"):
        catalog.network("unet")
    with pytest.raises(config.ConfigError, match=r"^--perturbation=mixup: choose one of .*cutmix"):
        parse_flags(workdir=str(tmp_path), perturbation="mixup")


class OnlySections:
    """A Config that answers only `allowed` sections: reading another fails the test."""

    def __init__(self, cfg, allowed):
        self._cfg, self._allowed = cfg, allowed

    def __getattr__(self, name):
        assert name in self._allowed, f"from_config read cfg.{name}, not in its catalog entry"
        return getattr(self._cfg, name)


@pytest.mark.parametrize("name", catalog.method_names())
def test_each_method_reads_only_the_sections_its_entry_names(name, tmp_path):
    entry = catalog.method(name)
    cfg, _ = parse_flags(workdir=str(tmp_path), perturbation=name)
    method = catalog.load(entry.builder).from_config(OnlySections(cfg, entry.sections))
    assert isinstance(method, base.Perturbation)
    assert set(entry.sections) <= {f.name for f in dataclasses.fields(config.Config)}


def test_which_methods_need_a_feature_split_follows_their_options(tmp_path):
    cfg, _ = parse_flags(workdir=str(tmp_path), perturbation="unimatch_v2")
    assert catalog.needs_feature_split("unimatch_v2", cfg)
    cfg, _ = parse_flags(workdir=str(tmp_path), perturbation="unimatch_v2", comp_dropout="false",
                         arch="pspnet_small")
    assert not catalog.needs_feature_split("unimatch_v2", cfg)
    assert catalog.needs_feature_split("unimatch", cfg) and not catalog.needs_feature_split(
        "cutmix", cfg)
