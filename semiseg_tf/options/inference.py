"""Flags of inference: how a network turns a whole image into class maps (semiseg_tf/inference.py).

Shared by the trainer's evaluations, evaluate, predict and export (which bakes them into the graph).
"""
import dataclasses

from semiseg_tf.options import Section, Topic, parse_ints, parse_numbers

TOPIC = Topic("Inference", __name__)

TOPIC.define("integer", "eval_batch_size", 16, "Images per inference batch when they share one size "
        "(validation during training, evaluate, predict); images of different sizes go one by one.")
TOPIC.define("boolean", "flip", False, "Average the class probabilities of each image and of its "
        "horizontal mirror (the mirror's mirrored back).")
TOPIC.define("list", "scales", ["1"], "Image scales whose class probabilities are averaged, e.g. "
        "0.5,0.75,1.0,1.25,1.5,1.75 (each pass resizes the image bilinearly, and its probabilities "
        "back to the image's size). Default: one pass at the image's size.")
TOPIC.define("string", "tile_size", None, "'H,W': predict images (at each scale) in sliding-window "
        "tiles of this size and average the overlapping tiles' probabilities, for images larger "
        "than the network was trained on (e.g. 512,1024 for full-resolution 2048x1024 Cityscapes on "
        "a network trained at half resolution). Default: each image in one pass.")
TOPIC.define("float", "tile_overlap", 1 / 3, "Sliding window: the share of a tile that overlaps "
        "its neighbour, in [0, 1) (1/3, as mmsegmentation's Cityscapes setting: 1024-px tiles every "
        "683 px).")
TOPIC.define("integer", "max_pass_pixels", None, "With no --tile_size, an image (at each "
        "scale) of more pixels than this goes through the network in 512x512 tiles (smaller where "
        "this limit is under 512x512) overlapping by --tile_overlap, so that the network's memory "
        "is a tile's whatever the image's size; smaller images go in one pass. Default: for "
        "predict, evaluate, select and export, the most pixels the run's network takes in one "
        "pass within the 2 GB memory bound that --max_image_pixels follows from (measured for each "
        "network: docs/using.md, 'Memory'; 2048x2048 at most); for the trainer's validation, "
        "2048x2048 whatever the network.")


@dataclasses.dataclass(frozen=True)
class Inference(Section):
    TOPIC = TOPIC
    PARSE = {"scales": parse_numbers(float), "tile_size": parse_ints(2)}
    eval_batch_size: int
    flip: bool
    scales: tuple
    tile_size: tuple
    tile_overlap: float
    max_pass_pixels: int

    def check(self):
        self.require(self.eval_batch_size > 0, "eval_batch_size", "must be positive")
        self.require(self.scales and min(self.scales) > 0, "scales",
                     "expected one or more positive numbers")
        self.require(0 <= self.tile_overlap < 1, "tile_overlap", "must lie in [0, 1)")
        self.require(self.max_pass_pixels is None or self.max_pass_pixels > 0, "max_pass_pixels",
                     "must be positive")

    def options(self):
        """The semiseg_tf.inference.InferenceOptions these flags describe."""
        from semiseg_tf import inference   # TensorFlow: not for --help
        return inference.InferenceOptions(flip=self.flip, scales=self.scales,
                                          tile_size=self.tile_size,
                                          tile_overlap=self.tile_overlap,
                                          max_pass_pixels=self.max_pass_pixels
                                          or inference.FROM_NETWORK)
