"""Flags of inference: how a network turns a whole image into class maps (semiseg_tf/inference.py).

Shared by the trainer's evaluations, evaluate, predict and export (which bakes them into the graph).
"""
from semiseg_tf.options import Topic

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
