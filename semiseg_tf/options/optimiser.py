"""Flags of the optimiser and its learning-rate schedule."""
import dataclasses

from semiseg_tf.options import Section, Topic, parse_numbers

TOPIC = Topic("Optimiser", __name__)

TOPIC.define("float", "backbone_lr_scale", 0.1, "Learning rate of the backbone (the pretrained "
        "part) as a fraction of the head's, as in the paper (1 trains all at --learning_rate, which"
        " is also what the authors' DeepLab v3+ code does by mistake). No effect on networks "
        "without a backbone.")
TOPIC.define("boolean", "deeplab2_authors_repeated_updates", False, "DeepLab v2: update each "
        "backbone weight as many times per step as the authors' optimiser lists it (conv1 once, "
        "a block's convs 3 times, the downsample convs 4 times: their pretrained_parameters() "
        "recurses twice, and PyTorch 1.4 applied every copy), so their backbone moved about 3x "
        "further per step than --backbone_lr_scale says. Reproduces the paper's DeepLab v2 numbers"
        " (flags/paper_as_run/); default off: each weight once.")
TOPIC.define("enum", "opt_type", "adam", ["adam", "adamw", "sgd"], "Optimiser: Adam (PyTorch "
        "defaults, no weight decay), AdamW (PyTorch's: Adam with decoupled weight decay, "
        "--adamw_weight_decay) or SGD with momentum.")
TOPIC.define("float", "adamw_weight_decay", 0.01, "AdamW's decoupled weight decay: each step "
        "multiplies every trained weight by 1 - rate x this, at the weight's own rate (so the "
        "backbone's is scaled by --backbone_lr_scale), as PyTorch's AdamW with parameter groups.")
TOPIC.define("float", "learning_rate", 1e-3, "Base learning rate.")
TOPIC.define("float", "sgd_momentum", 0.9, "SGD momentum.")
TOPIC.define("boolean", "sgd_nesterov", False, "SGD with Nesterov momentum.")
TOPIC.define("float", "sgd_weight_decay", 5e-4, "SGD weight decay, added to every gradient as L2 "
        "(PyTorch style, biases and batch norm included).")
TOPIC.define("enum", "lr_sched", "none", ["none", "poly", "cosine", "stepped"],
        "Learning-rate schedule over --train_steps.")
TOPIC.define("list", "lr_step_boundaries", [], "Steps at which 'stepped' multiplies the rate by "
        "--lr_step_gamma, e.g. 30000,60000.")
TOPIC.define("float", "lr_step_gamma", 0.1, "Factor of the 'stepped' schedule.")
TOPIC.define("float", "lr_poly_power", 0.9, "Power of the 'poly' schedule.")


@dataclasses.dataclass(frozen=True)
class Optimiser(Section):
    TOPIC = TOPIC
    PARSE = {"lr_step_boundaries": lambda name, values: tuple(sorted(parse_numbers(int)(name, values)))}
    backbone_lr_scale: float
    deeplab2_authors_repeated_updates: bool
    opt_type: str
    adamw_weight_decay: float
    learning_rate: float
    sgd_momentum: float
    sgd_nesterov: bool
    sgd_weight_decay: float
    lr_sched: str
    lr_step_boundaries: tuple
    lr_step_gamma: float
    lr_poly_power: float

    def build(self, steps):
        """The semiseg_tf.semisup.optim optimiser these flags describe, its schedule over `steps`."""
        from semiseg_tf.semisup import optim   # TensorFlow: not for --help
        schedule = optim.AuthorsSchedule(self.lr_sched, self.learning_rate, steps,
                                         self.lr_poly_power, self.lr_step_boundaries,
                                         self.lr_step_gamma)
        return optim.build_optimizer(self.opt_type, schedule, self.sgd_momentum, self.sgd_nesterov,
                                     self.adamw_weight_decay)

    def check(self):
        self.require(self.learning_rate > 0, "learning_rate", "must be positive")
        for field in ("backbone_lr_scale", "adamw_weight_decay", "sgd_momentum",
                      "sgd_weight_decay", "lr_step_gamma",
                      "lr_poly_power"):
            self.require(getattr(self, field) >= 0, field, "must be >= 0")
        self.require(self.lr_sched != "stepped" or self.lr_step_boundaries, "lr_step_boundaries",
                     "--lr_sched=stepped needs at least one boundary step")
