"""Flags of the student's strong augmentation of unlabelled images: colour jitter and blur."""
import dataclasses

from semiseg_tf.options import Section, Topic

TOPIC = Topic("The student's colour augmentation", __name__)

TOPIC.define("boolean", "aug_strong_colour", False, "Colour-augment the student's view of "
        "unlabelled images (not the teacher's): torchvision ColorJitter with the --aug_colour_* "
        "strengths, then greyscale (the authors' last commit, SPEC 3.8). Works with every "
        "perturbation.", field="colour")
TOPIC.define("float", "aug_strong_blur", 0.0, "Probability of a Gaussian blur of the student's "
        "view of unlabelled images (after --aug_strong_colour), its standard deviation from U(0.1, "
        "2.0) pixels, as FixMatch's and UniMatch's strong view (0.5 there); 0: no blur. Works with "
        "every perturbation.", field="blur_prob")
TOPIC.define("float", "aug_colour_brightness", 0.4, "Colour augmentation: brightness factor drawn "
        "from U(1-b, 1+b).", field="brightness")
TOPIC.define("float", "aug_colour_contrast", 0.4, "Colour augmentation: contrast factor from U(1-c,"
        " 1+c).", field="contrast")
TOPIC.define("float", "aug_colour_saturation", 0.4, "Colour augmentation: saturation factor from "
        "U(1-s, 1+s).", field="saturation")
TOPIC.define("float", "aug_colour_hue", 0.1, "Colour augmentation: hue shift from U(-h, h), in "
        "turns (at most 0.5).", field="hue")
TOPIC.define("float", "aug_colour_prob", 0.8, "Colour augmentation: probability of applying the "
        "jitter.", field="colour_prob")
TOPIC.define("float", "aug_colour_greyscale_prob", 0.2, "Colour augmentation: probability of making"
        " the student's view grey (after the jitter).", field="greyscale_prob")


@dataclasses.dataclass(frozen=True)
class StrongAugmentation(Section):
    TOPIC = TOPIC
    colour: bool
    blur_prob: float
    brightness: float
    contrast: float
    saturation: float
    hue: float
    colour_prob: float
    greyscale_prob: float

    def check(self):
        for field in ("brightness", "contrast", "saturation"):
            self.require(getattr(self, field) >= 0, field, "must be >= 0")
        self.require(0 <= self.hue <= 0.5, "hue", "must lie in [0, 0.5]")
        for field in ("colour_prob", "greyscale_prob", "blur_prob"):
            self.require(0 <= getattr(self, field) <= 1, field, "must lie in [0, 1]")
