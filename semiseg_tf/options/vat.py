"""Flags of virtual adversarial training (semiseg_tf/semisup/methods/vat.py)."""
import dataclasses

from semiseg_tf.options import Section, Topic

TOPIC = Topic("VAT", __name__)

TOPIC.define("float", "vat_radius", 0.5, "VAT: radius of the adversarial perturbation, times sqrt(C"
        " H W) (fixed) or times the image's own variation (--adaptive_vat_radius).", field="radius")
TOPIC.define("boolean", "adaptive_vat_radius", False, "VAT: radius scaled per image by half the L2 "
        "norm of its central differences (the paper recommends it with radius 1).",
        field="adaptive_radius")
TOPIC.define("boolean", "vat_dir_from_student", False, "VAT: find the adversarial direction with "
        "the student instead of the teacher.", field="dir_from_student")
TOPIC.define("float", "vat_probe_scale", 1e-2, "VAT: size of the power iteration's probe, per image"
        " element (its norm is this times sqrt(C H W)). It must stay well above float32 rounding and "
        "well below the radius: the authors' 1e-6 H W / 1000 (--vat_authors_probe) is not, and "
        "through a trained network its direction is far from the first-order one (BENCHMARKS.md).",
        field="probe_scale")
TOPIC.define("boolean", "vat_authors_probe", False, "VAT: probe at the authors' norm, 1e-6 H W / "
        "1000 per sample (1.03e-4 at 321x321), instead of --vat_probe_scale: the paper's VAT "
        "baseline as it was run (BENCHMARKS.md measures how far its direction is from the exact "
        "one).", field="authors_probe")
TOPIC.define("boolean", "vat_authors_eval_mode", False, "VAT: reproduce the authors' bug: the "
        "direction network is left in inference mode, so the teacher's targets (or, with "
        "--vat_dir_from_student, the student's consistency pass) use moving batch-norm statistics. "
        "The supervised pass keeps batch statistics here.", field="authors_eval_mode")


@dataclasses.dataclass(frozen=True)
class Vat(Section):
    TOPIC = TOPIC
    radius: float
    adaptive_radius: bool
    dir_from_student: bool
    probe_scale: float
    authors_probe: bool
    authors_eval_mode: bool

    def check(self):
        self.require(self.radius >= 0, "radius", "must be >= 0")
        self.require(self.probe_scale > 0, "probe_scale", "must be positive")
