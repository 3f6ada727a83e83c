"""Flags of the training crops' geometric augmentation."""
import dataclasses

from semiseg_tf.options import Section, Topic, parse_ints

TOPIC = Topic("Augmentation", __name__)

TOPIC.define("string", "crop_size", "64,64", "Training crop 'H,W' in pixels; images smaller than "
        "the crop are padded with the mean colour and the ignore label.")
TOPIC.define("boolean", "aug_hflip", False, "Random horizontal flips of training crops.",
        field="hflip")
TOPIC.define("boolean", "aug_vflip", False, "Random vertical flips of training crops.",
        field="vflip")
TOPIC.define("boolean", "aug_scale_hung", False, "Hung et al.'s random scale in {0.5, 0.6, ..., "
        "1.5} before cropping (the paper's Pascal VOC augmentation).", field="scale_hung")
TOPIC.define("boolean", "aug_hvflip", False, "Random diagonal flips (transpose) of training crops; "
        "needs a square crop.", field="hvflip")
TOPIC.define("float", "aug_max_scale", 1.0, "Rotate/scale/crop augmentation: scale drawn log-"
        "uniformly from [1/s, s] (ISIC: 1.1). Used when --aug_scale_hung is off and this or "
        "--aug_rot_mag is set; borders are mirrored (OpenCV BORDER_REFLECT_101).",
        field="max_scale")
TOPIC.define("boolean", "aug_scale_non_uniform", False, "Rotate/scale/crop: independent x and y "
        "scales.", field="scale_non_uniform")
TOPIC.define("float", "aug_rot_mag", 0.0, "Rotate/scale/crop: rotation drawn from U(-m, m) degrees "
        "(ISIC: 45).", field="rot_mag")
TOPIC.define("float", "aug_offset_range", 16.0, "Standard-augmentation consistency "
        "(--perturbation=augment): the student's crop is offset from the teacher's by up to this "
        "many pixels per axis.", field="offset_range")
TOPIC.define("boolean", "aug_free_scale_rot", False, "--perturbation=augment: the student's view "
        "gets its own scale and rotation (otherwise the views differ by offset, flips and Hung "
        "scale).", field="free_scale_rot")


@dataclasses.dataclass(frozen=True)
class Augmentation(Section):
    TOPIC = TOPIC
    PARSE = {"crop_size": parse_ints(2)}
    crop_size: tuple
    hflip: bool
    vflip: bool
    scale_hung: bool
    hvflip: bool
    max_scale: float
    scale_non_uniform: bool
    rot_mag: float
    offset_range: float
    free_scale_rot: bool

    def check(self):
        self.require(self.crop_size, "crop_size", "expected 'H,W', two positive integers")
        self.require(self.max_scale >= 1, "max_scale", "must be >= 1 (scales are drawn from [1/s, "
                     "s])")
        for field in ("rot_mag", "offset_range"):
            self.require(getattr(self, field) >= 0, field, "must be >= 0")
        self.require(not self.hvflip or self.crop_size[0] == self.crop_size[1], "hvflip",
                     "diagonal flips need a square --crop_size")

    def geometric_params(self):
        """The semiseg_tf.augment.geometric.GeometricParams these flags describe."""
        from semiseg_tf.augment import geometric   # TensorFlow: not for --help
        return geometric.GeometricParams(
            crop_size=self.crop_size, scale_hung=self.scale_hung, max_scale=self.max_scale,
            scale_non_uniform=self.scale_non_uniform, rot_mag=self.rot_mag, hflip=self.hflip,
            vflip=self.vflip, hvflip=self.hvflip, crop_offset=self.offset_range,
            free_scale_rot=self.free_scale_rot)
