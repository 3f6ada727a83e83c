"""The DINOv2 networks: the DPT decoder against UniMatch V2's, written in torch (torch_reference)."""
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from semiseg_tf.models import dpt  # noqa: E402


def _keras_name(torch_name):
    """`scratch.refinenet4.resConfUnit1.conv1` -> `scratch_refinenet4_resConfUnit1_conv1`."""
    return torch_name.replace(".", "_")


def test_dinov2_dpt_decoder_equals_unimatch_v2s_head_with_the_same_weights():
    import torch_reference
    torch.manual_seed(0)
    out_channels, features, tokens, classes = (8, 16, 24, 24), 12, 20, 5
    head = torch_reference.DPTHead(classes, tokens, features, out_channels).eval()
    decoder = dpt.dpt_decoder(classes, tokens, features, out_channels)
    assigned = set()
    for name, module in head.named_modules():
        if not isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            continue
        if name.startswith("scratch.refinenet4.resConfUnit1."):
            continue          # built by UniMatch V2 but never used: refinenet4 has no skip input
        layer = decoder.get_layer(_keras_name(name))
        weight = module.weight.detach().numpy()
        # Conv2d: [out, in, kh, kw] -> [kh, kw, in, out]; ConvTranspose2d: [in, out, kh, kw] ->
        # Keras's [kh, kw, out, in]: the same transposition.
        values = [weight.transpose(2, 3, 1, 0)]
        if module.bias is not None:
            values.append(module.bias.detach().numpy())
        layer.set_weights(values)
        assigned.add(layer.name)
    assert assigned == {layer.name for layer in decoder.layers if layer.weights}
    rng = np.random.default_rng(0)
    grid = (5, 7)                          # odd: the stride-2 layer rounds up, as PyTorch's
    maps = [rng.standard_normal((2, *grid, tokens)).astype(np.float32) for _ in range(4)]
    image = np.zeros((2, grid[0] * 14, grid[1] * 14, 3), np.float32)
    ours = decoder([image, *maps]).numpy()
    with torch.no_grad():
        theirs = head([torch.from_numpy(m.transpose(0, 3, 1, 2)) for m in maps]).numpy()
    np.testing.assert_allclose(ours, theirs.transpose(0, 2, 3, 1), atol=1e-5, rtol=1e-4)


TINY = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=2, patch_size=14,
            image_size=56, layerscale_value=1.0)


@pytest.fixture(scope="module")
def hugging_face_tiny_dinov2(tmp_path_factory):
    """A transformers Dinov2Model of the tiny size with random weights (not its initial ones,
    which leave layer scales and biases at constants), saved as a checkpoint folder."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.Dinov2Model(transformers.Dinov2Config(**TINY)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    folder = tmp_path_factory.mktemp("dinov2") / "tiny"
    model.save_pretrained(folder)
    return model, str(folder)


@pytest.mark.parametrize("height, width", [(56, 56), (56, 70), (42, 84)])
def test_dinov2_features_equal_transformers_at_any_size(hugging_face_tiny_dinov2, height, width):
    from semiseg_tf.models import dinov2
    reference, folder = hugging_face_tiny_dinov2
    features = dinov2.DINOv2Features(dinov2.SIZES["dinov2_tiny"])
    image = np.random.default_rng(height + width).standard_normal((2, height, width, 3))
    image = image.astype(np.float32)
    features(image)
    assert dinov2.load_pretrained(features, folder) == len(features.dinov2.weights)
    grids = features(image)
    with torch.no_grad():
        hidden = reference(torch.from_numpy(image.transpose(0, 3, 1, 2)),
                           output_hidden_states=True).hidden_states
        for grid, tap in zip(grids, dinov2.SIZES["dinov2_tiny"].taps, strict=True):
            expected = reference.layernorm(hidden[tap + 1])[:, 1:].numpy()
            assert grid.shape == (2, height // 14, width // 14, 32)
            np.testing.assert_allclose(grid.numpy().reshape(expected.shape), expected, atol=2e-6)


def test_dinov2_bicubic_weights_equal_torchs_interpolate():
    from semiseg_tf.models import dinov2
    grid = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    for size in (3, 5, 8, 13):
        expected = torch.nn.functional.interpolate(grid, size=(size, size), mode="bicubic",
                                                   align_corners=False)[0, 0].numpy()
        matrix = dinov2.cubic_weights(5, size).numpy().astype(np.float64)    # float32 weights
        np.testing.assert_allclose(matrix @ grid[0, 0].numpy() @ matrix.T, expected, atol=5e-6)


def test_dinov2_tiny_network_gives_logits_at_the_input_size_and_splits_for_features():
    from semiseg_tf import models
    network = models.build("dinov2_tiny", 6)
    assert models.input_multiple("dinov2_tiny") == 14
    image = np.random.default_rng(0).standard_normal((2, 42, 70, 3)).astype(np.float32)
    logits = network(image)
    assert logits.shape == (2, 42, 70, 6)
    split = models.feature_split(network)
    features = split.encode(image, training=False)
    assert [f.shape for f in features] == [(2, 3, 5, 32)] * 4
    np.testing.assert_allclose(split.decode(image, features, training=False), logits, atol=1e-5)
    assert models.backbone_of(network).name == "backbone"


def test_dinov2_backbone_weights_flag_loads_a_hugging_face_or_keras_hub_folder(
        hugging_face_tiny_dinov2, tmp_path):
    """--backbone_weights with a transformers checkpoint folder, and with the keras-hub preset
    folder saved from it, gives the student (and the teacher, its copy) transformers' features."""
    import keras_hub
    from conftest import parse_flags
    from semiseg_tf import models
    from semiseg_tf.training import builders
    reference, folder = hugging_face_tiny_dinov2
    preset = tmp_path / "preset"
    keras_hub.models.DINOV2Backbone.from_preset(folder).save_to_preset(str(preset))
    image = np.random.default_rng(5).standard_normal((1, 42, 56, 3)).astype(np.float32)
    with torch.no_grad():
        hidden = reference(torch.from_numpy(image.transpose(0, 3, 1, 2)),
                           output_hidden_states=True).hidden_states
        expected = reference.layernorm(hidden[4])[:, 1:].numpy().reshape(1, 3, 4, 32)
    for weights in (folder, str(preset)):
        cfg, _ = parse_flags(workdir=str(tmp_path / "run"), arch="dinov2_tiny", crop_size="56,56",
                             backbone_weights=weights)
        model = builders.build_model(cfg, num_classes=5)
        for network in (model.student, model.teacher):
            last = models.feature_split(network).encode(image, training=False)[-1]
            np.testing.assert_allclose(last.numpy(), expected, atol=2e-6)


def test_dinov2_backbone_weights_that_do_not_fit_are_one_line(hugging_face_tiny_dinov2, tmp_path):
    from conftest import parse_flags
    from semiseg_tf import config
    from semiseg_tf.errors import WeightsError
    from semiseg_tf.training import builders
    _, folder = hugging_face_tiny_dinov2
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg, _ = parse_flags(workdir=str(tmp_path / "run"), arch="dinov2_tiny", crop_size="56,56",
                         backbone_weights=str(empty))
    with pytest.raises(WeightsError, match=f"^--backbone_weights={empty}: not a DINOv2 checkpoint"):
        builders.build_model(cfg, num_classes=5)
    cfg, _ = parse_flags(workdir=str(tmp_path / "run"), arch="dinov2_small", crop_size="56,56",
                         backbone_weights=folder)
    with pytest.raises(WeightsError, match=r"a DINOv2 of width 32, 4 blocks, 2 heads, MLP 64, "
                                           r"patch 14; the network is 384, 12, 6, MLP 1536, "
                                           r"patch 14$"):
        builders.build_model(cfg, num_classes=5)
    with pytest.raises(config.ConfigError, match="^--backbone_weights=/nonexistent: no such folder"):
        parse_flags(workdir=str(tmp_path / "run"), arch="dinov2_tiny", crop_size="56,56",
                    backbone_weights="/nonexistent")


def _damaged_copies(folder, root):
    """Copies of a good checkpoint folder, each damaged in one way a download or a disk does."""
    import shutil
    damages = {
        "config_not_json": lambda f: (f / "config.json").write_text("{not json"),
        "config_of_another_model": lambda f: (f / "config.json").write_text(
            '{"model_type": "bert", "hidden_size": 32}'),
        "weights_truncated": lambda f: (f / "model.safetensors").write_bytes(
            (f / "model.safetensors").read_bytes()[:-1000]),
        "weights_missing": lambda f: (f / "model.safetensors").unlink(),
        "weights_not_safetensors": lambda f: (f / "model.safetensors").write_bytes(b"\0" * 4096),
    }
    for name, damage in damages.items():
        copy = root / name
        shutil.copytree(folder, copy)
        damage(copy)
        yield name, copy


def test_dinov2_damaged_checkpoint_folders_are_one_line_and_left_as_they_were(
        hugging_face_tiny_dinov2, tmp_path):
    from semiseg_tf.errors import WeightsError
    from semiseg_tf.models import dinov2
    _, folder = hugging_face_tiny_dinov2
    features = dinov2.DINOv2Features(dinov2.SIZES["dinov2_tiny"])
    features(np.zeros((1, 28, 28, 3), np.float32))
    before = [w.numpy() for w in features.weights]
    for name, copy in _damaged_copies(pathlib.Path(folder), tmp_path):
        contents = {p.name: p.read_bytes() for p in copy.iterdir()}
        with pytest.raises(WeightsError) as error:
            dinov2.load_pretrained(features, str(copy))
        message = str(error.value)
        assert message.startswith(f"{copy}: "), (name, message)
        assert "\n" not in message, (name, message)
        assert {p.name: p.read_bytes() for p in copy.iterdir()} == contents, name
        for value, weight in zip(before, features.weights, strict=True):
            np.testing.assert_array_equal(weight.numpy(), value, err_msg=name)


@pytest.mark.parametrize("kind", ["hugging_face", "keras_hub"])
def test_a_dinov2_folder_declaring_another_size_is_refused_before_anything_is_built(
        tmp_path, monkeypatch, kind):
    """A small config.json declaring a huge backbone (width 16384, 48 blocks) beside garbage
    weights: refused from the config alone, keras-hub never asked to build it."""
    import json

    import keras_hub

    from semiseg_tf.errors import WeightsError
    from semiseg_tf.models import dinov2
    declared = ({"model_type": "dinov2", "hidden_size": 16384, "num_hidden_layers": 48,
                 "num_attention_heads": 128, "mlp_ratio": 4, "patch_size": 14}
                if kind == "hugging_face" else
                {"class_name": "DINOV2Backbone", "config": {
                    "hidden_dim": 16384, "num_layers": 48, "num_heads": 128,
                    "intermediate_dim": 65536, "patch_size": 14}})
    (tmp_path / "config.json").write_text(json.dumps(declared))
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 1024)
    assert dinov2.declared_size(str(tmp_path)) == (16384, 48, 128, 65536, 14)
    monkeypatch.setattr(keras_hub.models.DINOV2Backbone, "from_preset",
                        lambda *a, **k: pytest.fail("built before the sizes were compared"))
    features = dinov2.DINOv2Features(dinov2.SIZES["dinov2_tiny"])
    features(np.zeros((1, 28, 28, 3), np.float32))
    with pytest.raises(WeightsError, match=r"a DINOv2 of width 16384, 48 blocks, 128 heads, MLP "
                                           r"65536, patch 14; the network is 32, 4, 2"):
        dinov2.load_pretrained(features, str(tmp_path))


def test_dinov2_config_and_weight_files_over_their_budget_are_refused_unread(
        hugging_face_tiny_dinov2, tmp_path, monkeypatch):
    """Sparse files of 1 GiB in place of config.json or model.safetensors: one line each from
    their size, neither read."""
    import builtins
    import shutil

    from semiseg_tf.errors import WeightsError
    from semiseg_tf.models import dinov2
    _, folder = hugging_face_tiny_dinov2
    features = dinov2.DINOv2Features(dinov2.SIZES["dinov2_tiny"])
    features(np.zeros((1, 28, 28, 3), np.float32))
    for name, message in (("config.json", "more than a DINOv2 config's"),
                          ("model.safetensors", "more than twice this network's encoder")):
        copy = tmp_path / name.replace(".", "_")
        shutil.copytree(folder, copy)
        with open(copy / name, "wb") as f:
            f.truncate(2 ** 30)
        opened = builtins.open
        monkeypatch.setattr(builtins, "open", lambda file, *a, **k: pytest.fail(f"read {file}")
                            if str(file).endswith(name) else opened(file, *a, **k))
        with pytest.raises(WeightsError, match=f"^{copy}: {name} has "
                                               f"{2 ** 30} bytes, {message}"):
            dinov2.load_pretrained(features, str(copy))
        monkeypatch.setattr(builtins, "open", opened)


def test_a_dinov2_run_scores_its_final_miou_again_from_its_checkpoint_and_its_export(tmp_path):
    """UniMatch V2 on the tiny DINOv2 trains; evaluate on the run folder (the network rebuilt
    from the checkpoint) and on its export (from network.keras's graph) give the trainer's final
    confusion matrix, so every weight of the encoder was saved."""
    import json
    import os

    from conftest import TINY_RUN, parse_flags, run_main
    from semiseg_tf import training
    cfg, text = parse_flags(**{
        **TINY_RUN, "workdir": str(tmp_path / "run"), "arch": "dinov2_tiny", "crop_size": "28,28",
        "synthetic_image_size": 28, "perturbation": "unimatch_v2", "teacher_alpha_warmup": "true",
        "opt_type": "adamw", "cons_loss_fn": "hard_ce", "conf_per_pixel": "true",
        "cons_average": "valid", "eval_every": 4, "checkpoint_every": 4})
    training.Trainer(cfg, text, out=open(os.devnull, "w")).run()
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())
    done = run_main("evaluate", f"--workdir={tmp_path / 'run'}", f"--output_dir={tmp_path}/eval")
    assert done.returncode == 0, done.stderr[-2000:]
    scores = json.loads((tmp_path / "eval" / "scores.json").read_text())
    assert scores["confusion"] == final["confusion"]
    export_dir = tmp_path / "saved_models" / "run" / "1"
    done = run_main("export", f"--workdir={tmp_path / 'run'}", f"--export_dir={export_dir}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (export_dir / "network.keras").exists()
    done = run_main("evaluate", f"--saved_model={export_dir}", "--dataset=synthetic",
                    "--synthetic_num_train=24", "--synthetic_num_val=6",
                    "--synthetic_image_size=28", f"--output_dir={tmp_path}/eval_export")
    assert done.returncode == 0, done.stderr[-2000:]
    exported = json.loads((tmp_path / "eval_export" / "scores.json").read_text())
    assert exported["confusion"] == final["confusion"]
