"""Flags of FixMatch's and UniMatch's pseudo-labels and their CutMix box."""
import dataclasses

from semiseg_tf.options import Section, Topic, parse_range

TOPIC = Topic("FixMatch and UniMatch", __name__)

TOPIC.define("float", "pseudo_label_box_prob", 0.5, "FixMatch and UniMatch: probability that a "
        "strong view gets a CutMix box pasting in the second image (UniMatch's 0.5).",
        field="box_prob")
TOPIC.define("string", "pseudo_label_box_area", "0.02:0.4", "FixMatch and UniMatch: the box's area "
        "as a fraction of the crop, drawn uniformly from 'a:b' (UniMatch's 0.02:0.4).",
        field="box_area")
TOPIC.define("string", "pseudo_label_box_ratio", "0.3:3.3333333333333335", "FixMatch and "
        "UniMatch: the box's height / width ratio squared, drawn uniformly from 'a:b' (UniMatch's "
        "0.3:1/0.3).", field="box_ratio")
TOPIC.define("boolean", "pseudo_label_mix_inference", True, "FixMatch and UniMatch: the pasted "
        "image's pseudo-labels come from the target network in inference mode, before the step's "
        "training-mode passes, as the original code does; --nopseudo_label_mix_inference predicts "
        "them in training mode.", field="mix_inference")


@dataclasses.dataclass(frozen=True)
class PseudoLabels(Section):
    TOPIC = TOPIC
    PARSE = {"box_area": parse_range, "box_ratio": parse_range}
    box_prob: float
    box_area: tuple
    box_ratio: tuple
    mix_inference: bool

    def check(self):
        self.require(0 <= self.box_prob <= 1, "box_prob", "must lie in [0, 1]")
        self.require_range("box_area", 0, 1, open_low=True)
        self.require_range("box_ratio", 0, open_low=True)

    def box_params(self):
        """The semiseg_tf.augment.boxmask.PseudoLabelBoxParams these flags describe."""
        from semiseg_tf.augment import boxmask   # TensorFlow: not for --help
        return boxmask.PseudoLabelBoxParams(prob=self.box_prob, area_range=self.box_area,
                                            ratio_range=self.box_ratio)
