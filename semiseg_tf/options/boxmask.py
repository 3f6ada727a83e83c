"""Flags of the box masks that CutMix mixes by and Cutout erases with (semiseg_tf/augment/boxmask.py)."""
import dataclasses

from semiseg_tf.options import Section, Topic, parse_range

TOPIC = Topic("Box masks (CutMix, Cutout)", __name__)

TOPIC.define("string", "mask_prop_range", "0.5", "Box mask area fraction: one value 'p' or a range "
        "'a:b' drawn uniformly (CutMix: 0.5).", field="prop_range")
TOPIC.define("integer", "boxmask_n_boxes", 1, "Boxes per mask, combined by xor, each of area 1/n of"
        " the drawn fraction (3 for full-size Cityscapes crops, supplement D.3).", field="n_boxes")
TOPIC.define("boolean", "boxmask_fixed_aspect_ratio", False, "Boxes take the crop's aspect ratio "
        "instead of a random one.", field="fixed_aspect_ratio")
TOPIC.define("boolean", "boxmask_by_size", False, "--mask_prop_range gives side fractions, not "
        "area.", field="by_size")
TOPIC.define("boolean", "boxmask_outside_bounds", False, "Box centres may lie anywhere; boxes "
        "crossing the edge are clipped.", field="outside_bounds")
TOPIC.define("boolean", "boxmask_authors_outside_bounds", False, "With --boxmask_outside_bounds, "
        "reproduce the authors' bug: boxes crossing the top or left edge vanish (a negative slice "
        "start) instead of being clipped.", field="authors_outside_bounds")
TOPIC.define("boolean", "boxmask_no_invert", False, "Mask is 0 inside the boxes instead of 1 "
        "(Cutout then erases the box instead of keeping only the box).", field="no_invert")


@dataclasses.dataclass(frozen=True)
class BoxMask(Section):
    TOPIC = TOPIC
    PARSE = {"prop_range": parse_range}
    prop_range: tuple
    n_boxes: int
    fixed_aspect_ratio: bool
    by_size: bool
    outside_bounds: bool
    authors_outside_bounds: bool
    no_invert: bool

    def check(self):
        self.require_range("prop_range", 0, 1)
        self.require(self.n_boxes > 0, "n_boxes", "must be positive")

    def mask_params(self):
        """The semiseg_tf.augment.boxmask.BoxMaskParams these flags describe."""
        from semiseg_tf.augment import boxmask   # TensorFlow: not for --help
        return boxmask.BoxMaskParams(
            prop_range=self.prop_range, n_boxes=self.n_boxes,
            random_aspect_ratio=not self.fixed_aspect_ratio, by_size=self.by_size,
            within_bounds=not self.outside_bounds, invert=not self.no_invert,
            authors_outside_bounds=self.authors_outside_bounds)
