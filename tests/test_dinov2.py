"""The DINOv2 networks: the DPT decoder against UniMatch V2's, written in torch (torch_reference)."""
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
