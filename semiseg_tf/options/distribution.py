"""Flags of the device layout (tf.distribute)."""
from semiseg_tf.options import Topic

TOPIC = Topic("Distribution", __name__)

TOPIC.define("enum", "strategy", "default", ["default", "mirrored"],
        "tf.distribute strategy: 'default' (one device) or 'mirrored' (every local GPU, or the CPU "
        "split by --cpu_devices).")
TOPIC.define("integer", "cpu_devices", 1, "Split the CPU into this many logical devices, so that "
        "--strategy=mirrored can be tried without GPUs. Ignored when a GPU is present.")
