"""Flags of the device layout (tf.distribute), the numeric precision and XLA compilation."""
import dataclasses

from semiseg_tf.options import Section, Topic

TOPIC = Topic("Distribution and speed", __name__)

TOPIC.define("enum", "strategy", "default", ["default", "mirrored", "multi_worker"],
        "tf.distribute strategy: 'default' (one device), 'mirrored' (every local GPU, or the CPU "
        "split by --cpu_devices) or 'multi_worker' (MultiWorkerMirroredStrategy: every GPU of "
        "every machine of the cluster that --cluster describes; see docs/running.md, 'Training on "
        "several machines').")
TOPIC.define("enum", "cluster", "auto", ["auto", "tf_config", "slurm"],
        "Where --strategy=multi_worker finds its cluster: 'tf_config' (the TF_CONFIG environment "
        "variable), 'slurm' (SLURM's variables, through TensorFlow's SlurmClusterResolver), "
        "'auto' (TF_CONFIG if set, else SLURM's if set, else a cluster of this machine alone).")
TOPIC.define("integer", "cpu_devices", 1, "Split the CPU into this many logical devices, so that "
        "--strategy=mirrored can be tried without GPUs. Ignored when a GPU is present.")
TOPIC.define("enum", "mixed_precision", "float32", ["float32", "bfloat16", "float16", "auto"],
        "Precision of the networks' computations. auto: bfloat16 where the hardware computes it "
        "natively (a GPU of compute capability 8.0 or later; a CPU with AMX or AVX512_BF16), else "
        "float32; the run says which in its first lines and run.json. "
        "bfloat16/float16 compute convolutions in that "
        "precision (Keras's mixed dtype policies) and keep the variables, the EMA teacher, the "
        "batch-norm statistics, softmax, the losses and the confidence threshold in float32. "
        "float16 adds dynamic loss scaling (Keras's LossScaleOptimizer): a step whose gradient "
        "overflows is skipped, counted and the scale halved, with the teacher left as it was. "
        "bfloat16 needs no scaling; it is fast on recent GPUs (Ampere and later) and TPUs.")
TOPIC.define("boolean", "jit_compile", False, "Compile the training step and the network's "
        "evaluation passes with XLA (each new image size compiles once). On GPUs this is usually "
        "faster; on CPUs it rarely is.")


@dataclasses.dataclass(frozen=True)
class Distribution(Section):
    TOPIC = TOPIC
    strategy: str
    cluster: str
    cpu_devices: int
    mixed_precision: str
    jit_compile: bool

    def check(self):
        self.require(self.cpu_devices > 0, "cpu_devices", "must be positive")
