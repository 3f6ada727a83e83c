"""The pixel budget of every image a command decodes (train, prepare, evaluate, predict, export)."""
import dataclasses

from semiseg_tf.options import Section, Topic

TOPIC = Topic("Limits", __name__)

# semiseg_tf.data.native.DEFAULT_MAX_IMAGE_PIXELS (a test holds the two equal).
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000

TOPIC.define("integer", "max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS, "The most pixels (width x "
        "height) an image file may declare in its header; a larger one is refused before it is "
        "decoded (a small file can claim a size whose decoding takes gigabytes). predict and "
        "evaluate skip it with one line, prepare and train stop naming it; an export refuses it "
        "in its signatures (the value is baked into the graph).")


@dataclasses.dataclass(frozen=True)
class Limits(Section):
    TOPIC = TOPIC
    max_image_pixels: int

    def check(self):
        self.require(self.max_image_pixels > 0, "max_image_pixels", "must be a positive number of "
                     "pixels")
