"""Flags of the student's strong augmentation of unlabelled images: colour jitter and blur."""
import dataclasses

from semiseg_tf.options import Section, Topic, parse_numbers

TOPIC = Topic("The student's colour augmentation", __name__)
# The blur's kernel spans 6 standard deviations: a larger one would cost more than it could blur.
MAX_BLUR_SIGMA = 100.0

TOPIC.define("boolean", "aug_strong_colour", False, "Colour-augment the student's view of "
        "unlabelled images (not the teacher's): torchvision ColorJitter with the --aug_colour_* "
        "strengths, then greyscale (the authors' last commit). Works with every "
        "perturbation.", field="colour")
TOPIC.define("float", "aug_strong_blur", 0.0, "Probability of a Gaussian blur of the student's "
        "view of unlabelled images (after --aug_strong_colour), its standard deviation drawn from "
        "--aug_blur_sigma, as FixMatch's and UniMatch's strong view (0.5 there); 0: no blur. Works "
        "with every perturbation.", field="blur_prob")
TOPIC.define("string", "aug_blur_sigma", "0.1,2.0", "'LO,HI': the blur's standard deviation is "
        "drawn from U(LO, HI) pixels (FixMatch's, UniMatch's and UniMatch V2's 0.1,2.0), in pixels "
        "of a crop of --aug_blur_reference_crop when that is set.", field="blur_sigma")
TOPIC.define("integer", "aug_blur_reference_crop", 0, "Size the blur to the crop: the crop side "
        "(pixels) at which --aug_blur_sigma holds; the standard deviation is then scaled by this "
        "run's shorter crop side over it, so the blur covers the same share of the crop (UniMatch "
        "V2 set its blur for 518-pixel crops, UniMatch for 321 to 801). 0: --aug_blur_sigma in "
        "pixels of any crop, as published.", field="blur_reference_crop")
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
    PARSE = {"blur_sigma": parse_numbers(float)}
    colour: bool
    blur_prob: float
    blur_sigma: tuple
    blur_reference_crop: int
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
        self.require(len(self.blur_sigma) == 2
                     and 0 < self.blur_sigma[0] <= self.blur_sigma[1] <= MAX_BLUR_SIGMA,
                     "blur_sigma", f"expected 'LO,HI' with 0 < LO <= HI <= {MAX_BLUR_SIGMA} (pixels)")
        self.require(self.blur_reference_crop >= 0, "blur_reference_crop", "must be >= 0")

    def blur_sigma_for(self, crop_size):
        """The blur's (LO, HI) standard deviation in pixels of a crop of `crop_size` (H, W): as
        given, or scaled by the crop's shorter side over --aug_blur_reference_crop."""
        if not self.blur_reference_crop:
            return tuple(self.blur_sigma)
        scale = min(crop_size) / self.blur_reference_crop
        return tuple(sigma * scale for sigma in self.blur_sigma)

    def student_view(self, crop_size):
        """The student's strong view of a crop of `crop_size`, as PipelineParams' student_colour,
        student_blur_prob and student_blur_sigma."""
        return {"student_colour": self.colour_params(), "student_blur_prob": self.blur_prob,
                "student_blur_sigma": self.blur_sigma_for(crop_size)}

    def colour_params(self):
        """The student's semiseg_tf.augment.colour.ColourParams these flags describe; None
        without --aug_strong_colour."""
        if not self.colour:
            return None
        from semiseg_tf.augment import colour   # TensorFlow: not for --help
        return colour.ColourParams(
            brightness=self.brightness, contrast=self.contrast, saturation=self.saturation,
            hue=self.hue, prob=self.colour_prob, greyscale_prob=self.greyscale_prob)
