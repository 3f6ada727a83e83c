"""Each network's budgets follow from the memory bound and its measured pass (options/limits.py)."""
import math
import os
import subprocess
import sys

import pytest

from conftest import PEAK_BYTES
from semiseg_tf import inference, models, trained
from semiseg_tf.options import limits

MB = 1_000_000


def fake_costs(monkeypatch, network):
    """pass_memory.json holding the reference network at 600 MB and 100 bytes a pixel, and
    `network` as 'big'."""
    reference = {"fixed_bytes": 600 * MB, "bytes_per_pixel_class": 0.0,
                 "pass_bytes": {str(side): 100 * side * side for side in (256, 512, 1024, 2048)}}
    record = {"how": "test", "networks": {limits.REFERENCE_NETWORK: reference, "big": network}}
    monkeypatch.setattr(limits, "pass_memory", lambda: record)


def test_the_reference_network_keeps_the_defaults_its_figures_were_measured_with():
    budget = limits.network_budget(limits.REFERENCE_NETWORK, 6)
    assert budget.max_pass_pixels == limits.LARGEST_PASS_PIXELS == inference.DEFAULT_MAX_PASS_PIXELS
    assert budget.max_image_pixels == limits.DEFAULT_MAX_IMAGE_PIXELS == 40_000_000
    assert budget.max_request_pixels == limits.DEFAULT_MAX_REQUEST_PIXELS == 100_000_000


def test_every_network_has_its_pass_measured_up_to_the_bound():
    measured = limits.pass_memory()["networks"]
    assert set(models.available()) <= set(measured), set(models.available()) - set(measured)
    for arch, cost in measured.items():
        passes = {int(side): added for side, added in cost["pass_bytes"].items()}
        assert cost["fixed_bytes"] > 100 * MB and str(limits.TILE_SIDE) in cost["pass_bytes"], arch
        # Measured until a pass alone is over what any budget gives, or up to the largest pass.
        assert (max(passes) == 2048 or limits.PASS_MARGIN * passes[max(passes)]
                > limits.MEMORY_BOUND_BYTES - limits.PROCESS_BYTES), arch


def test_a_larger_network_takes_in_one_pass_the_largest_measured_square_that_fits(monkeypatch):
    # 300 MB more than the reference: by hand, the room is 2000 - 800 - 300 = 900 MB. At 1024
    # a pass of 700 MB with its image takes 1.1 * 700 + 30 * 1.048576 = 801.5 MB, at 1536
    # 1.1 * 800 + 30 * 2.359296 = 950.8 MB: over. Its 512x512 tiles take 1.1 * (150 - 26.2144)
    # = 136.16 MB more than the reference's: left for the image, 763.84 MB.
    fake_costs(monkeypatch, {"fixed_bytes": 900 * MB, "bytes_per_pixel_class": 0.0,
                             "pass_bytes": {"512": 150 * MB, "1024": 700 * MB,
                                            "1536": 800 * MB, "2048": 790 * MB}})
    budget = limits.network_budget("big", 21)
    assert budget.max_pass_pixels == 1024 * 1024      # not 2048: after 1536, not trusted
    assert inference.InferenceOptions(max_pass_pixels=budget.max_pass_pixels).describe() == (
        "one pass up to 1,048,576 pixels, 512x512 tiles beyond")
    tile_extra = 1.1 * (150 * MB - 100 * 512 * 512)
    assert budget.max_image_pixels == int((900 * MB - tile_extra) // 30) == 25_461_194
    assert budget.max_request_pixels == int((900 * MB - tile_extra) // 12)


def test_more_classes_add_their_measured_bytes_and_shrink_the_pass(monkeypatch):
    fake_costs(monkeypatch, {"fixed_bytes": 600 * MB, "bytes_per_pixel_class": 4.0,
                             "pass_bytes": {"512": 100 * MB, "1024": 400 * MB,
                                            "2048": 900 * MB}})
    assert limits.network_budget("big", 21).max_pass_pixels == 2048 * 2048
    # 150 classes: 129 more, 516 bytes a pixel: 1.1 * (400 MB + 541 MB) + 31 MB = 1067 MB at
    # 1024, within the room of 1200 MB; at 2048 far over.
    assert limits.network_budget("big", 150).max_pass_pixels == 1024 * 1024
    assert limits.pass_bytes(limits.pass_memory()["networks"]["big"], 256, 150) == (
        100 * MB / 4 + 129 * 4.0 * 256 * 256)       # the next larger side's, scaled down
    # A class measured at nothing (noise) still takes its float32 probability.
    noisy = {"fixed_bytes": 0, "bytes_per_pixel_class": 0.0, "pass_bytes": {"512": 0}}
    assert limits.pass_bytes(noisy, 512, 22) == 4 * 512 * 512


def test_an_unmeasured_network_gets_the_reference_networks_budget(monkeypatch):
    fake_costs(monkeypatch, {"fixed_bytes": 0, "bytes_per_pixel_class": 0.0, "pass_bytes": {}})
    assert limits.network_budget("not_measured", 6) == limits.NetworkBudget(
        "not_measured", 2048 * 2048, 40_000_000, 100_000_000)


def test_a_runs_model_takes_its_networks_pass_and_validation_the_papers_one_pass(
        trained_tiny_run):
    model = trained.open_model(workdir=trained_tiny_run)
    assert model.options.max_pass_pixels == limits.network_budget("tiny_unet", 6).max_pass_pixels
    given = inference.InferenceOptions(max_pass_pixels=1000)
    assert trained.open_model(workdir=trained_tiny_run, options=given).options == given
    unresolved = inference.InferenceOptions(max_pass_pixels=inference.FROM_NETWORK)
    assert unresolved.resolved().max_pass_pixels == inference.DEFAULT_MAX_PASS_PIXELS
    with pytest.raises(ValueError, match="resolved"):
        inference.Segmenter(model.network, (0.5,) * 3, (0.25,) * 3, options=unresolved)


def test_a_vision_transformers_one_pass_at_its_budget_stays_under_the_bound():
    """The DINOv2 demo network's attention grows with the square of its tokens: a 2048x2048 pass
    would take gigabytes. Its budget's largest one-pass image (and one just over it, in tiles),
    predicted by a process of its own, stays under the bound beside the image's own bytes."""
    budget = limits.network_budget("dinov2_tiny", 6)
    assert budget.max_pass_pixels < limits.LARGEST_PASS_PIXELS
    side = math.isqrt(budget.max_pass_pixels)
    script = f"""
import numpy as np
from semiseg_tf import inference, models
network = models.build("dinov2_tiny", 6)
options = inference.InferenceOptions(max_pass_pixels={budget.max_pass_pixels})
segmenter = inference.Segmenter(network, (0.5,) * 3, (0.25,) * 3,
                                models.input_multiple("dinov2_tiny"), options)
for side in ({side}, {side + 64}):
    segmenter.predict_label_maps(np.zeros((1, side, side, 3), np.uint8))
print({PEAK_BYTES})
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    peak = int(done.stdout.split()[-1])
    assert peak + limits.IMAGE_BYTES_PER_PIXEL * side * side < limits.MEMORY_BOUND_BYTES, peak
