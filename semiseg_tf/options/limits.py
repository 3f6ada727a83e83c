"""The pixel budget of every image a command decodes (train, prepare, evaluate, predict, export)."""
import dataclasses
import functools
import itertools
import json
import math
import os

from semiseg_tf.options import Section, Topic

TOPIC = Topic("Limits", __name__)

# The pixel budgets follow from one bound on a process's peak memory per input. A process
# predicting or serving costs PROCESS_BYTES (TensorFlow and the demo's network) plus, per pixel of
# the input: for one image through predict or the encoded signature (decoded, by tiles, its label
# map, overlay and PNG) IMAGE_BYTES_PER_PIXEL; for a request of several images to the encoded
# signature (its labels padded to the largest, and their copy when stacked) REQUEST_BYTES_PER_PIXEL.
# tests/test_untrusted.py holds both paths under these on large inputs. A larger network adds its
# pass over one tile (docs/using.md, "Memory").
MEMORY_BOUND_BYTES = 2_000_000_000
PROCESS_BYTES = 800_000_000
IMAGE_BYTES_PER_PIXEL = 30
REQUEST_BYTES_PER_PIXEL = 12
# semiseg_tf.data.native.DEFAULT_MAX_IMAGE_PIXELS (a test holds the two equal).
DEFAULT_MAX_IMAGE_PIXELS = (MEMORY_BOUND_BYTES - PROCESS_BYTES) // IMAGE_BYTES_PER_PIXEL
# semiseg_tf.serving's and export's --max_request_pixels.
DEFAULT_MAX_REQUEST_PIXELS = (MEMORY_BOUND_BYTES - PROCESS_BYTES) // REQUEST_BYTES_PER_PIXEL

# What one inference pass of each network costs (benchmarks/pass_memory.py measures it).
PASS_MEMORY_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "models", "pass_memory.json")
# The network the figures above were measured with (the test suite's): another network's budgets
# give the bound what its weights and its pass over a tile take beyond this one's.
REFERENCE_NETWORK = "tiny_unet"
# One pass at most (a full-resolution Cityscapes frame is half of it), and the measured cost of a
# pass taken with this margin: a process's peak varies a little from one allocation to the next.
LARGEST_PASS_PIXELS = 2048 * 2048
PASS_MARGIN = 1.1
# Tiles of images over a network's one pass are squares of this side at most (inference.auto_tile).
TILE_SIDE = 512
# The classes the passes are measured with (Pascal VOC's); more add their measured bytes a pixel.
MEASURED_CLASSES = 21

TOPIC.define("integer", "max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS, "The most pixels (width x "
        "height) an image file may declare in its header; a larger one is refused before it is "
        "decoded (a small file can claim a size whose decoding takes gigabytes). predict and "
        "evaluate skip it with one line, prepare and train stop naming it; an export refuses it "
        f"in its signatures (the value is baked into the graph). An image costs about "
        f"{IMAGE_BYTES_PER_PIXEL} bytes a pixel at peak beside the process's "
        f"{PROCESS_BYTES / 1e9:.1f} GB: the default keeps one image under "
        f"{MEMORY_BOUND_BYTES / 1e9:.0f} GB. Commands that run a network (predict, evaluate, "
        "select, export) lower the default by what a larger network's weights and pass take "
        "(measured for each network: docs/using.md, 'Memory').")


@dataclasses.dataclass(frozen=True)
class Limits(Section):
    TOPIC = TOPIC
    max_image_pixels: int

    def check(self):
        self.require(self.max_image_pixels > 0, "max_image_pixels", "must be a positive number of "
                     "pixels")


@functools.cache
def pass_memory():
    """pass_memory.json's contents ({'how': ..., 'networks': {arch: costs}}), or an empty record
    where nothing has been measured yet."""
    if not os.path.exists(PASS_MEMORY_FILE):
        return {"how": None, "networks": {}}
    with open(PASS_MEMORY_FILE) as f:
        return json.load(f)


@dataclasses.dataclass(frozen=True)
class NetworkBudget:
    """The default budgets of a command that runs network `arch` on images of `num_classes`
    classes, derived from MEMORY_BOUND_BYTES and the network's measured pass (`network_budget`)."""
    arch: str
    max_pass_pixels: int
    max_image_pixels: int
    max_request_pixels: int


def network_budget(arch, num_classes):
    """The `NetworkBudget` that keeps one image (or one request) through `arch` under
    MEMORY_BOUND_BYTES: beside the reference network's process (PROCESS_BYTES), the network's
    larger weights and graph, its pass (`pass_bytes`, with PASS_MARGIN), and the image's own
    IMAGE_BYTES_PER_PIXEL (a request's REQUEST_BYTES_PER_PIXEL). One pass takes the largest
    measured square that fits (LARGEST_PASS_PIXELS at most); a larger image goes by tiles, whose
    pass the image's and the request's budgets leave room for. A network not measured gets the
    reference network's."""
    networks = pass_memory()["networks"]
    cost, reference = networks.get(arch), networks.get(REFERENCE_NETWORK)
    if cost is None or reference is None:
        return NetworkBudget(arch, LARGEST_PASS_PIXELS, DEFAULT_MAX_IMAGE_PIXELS,
                             DEFAULT_MAX_REQUEST_PIXELS)
    room = (MEMORY_BOUND_BYTES - PROCESS_BYTES
            - max(0, cost["fixed_bytes"] - reference["fixed_bytes"]))

    def one_pass(side):     # an image of side x side in one pass: the pass and the image's bytes
        return (PASS_MARGIN * pass_bytes(cost, side, num_classes)
                + IMAGE_BYTES_PER_PIXEL * side * side)

    sides = sorted(int(side) for side in cost["pass_bytes"])
    # The sides up to the first that does not fit: a pass is not always larger for a larger
    # image, so a side that fits again after one that does not is not trusted.
    fitting = list(itertools.takewhile(lambda side: one_pass(side) <= room, sides))
    if fitting:
        max_pass = fitting[-1] ** 2
    else:                   # not even the smallest: its pass scaled down in proportion
        max_pass = int(sides[0] ** 2 * room / one_pass(sides[0]))
    max_pass = max(64 * 64, min(LARGEST_PASS_PIXELS, max_pass // 4096 * 4096))
    tile = min(TILE_SIDE, math.isqrt(max_pass))
    tile_extra = PASS_MARGIN * max(0.0, pass_bytes(cost, tile, num_classes)
                                   - pass_bytes(reference, tile, num_classes))
    max_image = int((room - tile_extra) // IMAGE_BYTES_PER_PIXEL)
    max_request = int((room - tile_extra) // REQUEST_BYTES_PER_PIXEL)
    return NetworkBudget(arch, max_pass, max(max_image, max_pass), max(max_request, max_pass))


def pass_bytes(cost, side, num_classes):
    """The bytes one pass over a side x side image of `num_classes` classes adds to a process,
    from a network's measured `cost` (an entry of pass_memory.json): the pass measured at that
    side, or at the next larger one scaled down by the pixels, plus what the classes beyond
    MEASURED_CLASSES add."""
    measured = sorted((int(s), added) for s, added in cost["pass_bytes"].items())
    larger = [(s, added) for s, added in measured if s >= side] or measured[-1:]
    at, added = larger[0]
    extra_classes = max(0, num_classes - MEASURED_CLASSES)
    # A class takes at least its float32 probability, where a measurement drowned it in noise.
    per_class = max(cost["bytes_per_pixel_class"], 4.0)
    return added * min(1.0, side * side / (at * at)) + extra_classes * per_class * side * side
