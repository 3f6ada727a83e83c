"""The pixel budget of every image a command decodes (train, prepare, evaluate, predict, export)."""
import dataclasses

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

TOPIC.define("integer", "max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS, "The most pixels (width x "
        "height) an image file may declare in its header; a larger one is refused before it is "
        "decoded (a small file can claim a size whose decoding takes gigabytes). predict and "
        "evaluate skip it with one line, prepare and train stop naming it; an export refuses it "
        f"in its signatures (the value is baked into the graph). An image costs about "
        f"{IMAGE_BYTES_PER_PIXEL} bytes a pixel at peak beside the process's "
        f"{PROCESS_BYTES / 1e9:.1f} GB (more with a network larger than the demo's): the default "
        f"keeps one image under {MEMORY_BOUND_BYTES / 1e9:.0f} GB.")


@dataclasses.dataclass(frozen=True)
class Limits(Section):
    TOPIC = TOPIC
    max_image_pixels: int

    def check(self):
        self.require(self.max_image_pixels > 0, "max_image_pixels", "must be a positive number of "
                     "pixels")
