"""Flags that choose the trained model evaluate, predict and export use."""
from semiseg_tf.options import Topic

TOPIC = Topic("Trained model", __name__)

TOPIC.define("enum", "network", None, ["teacher", "student"], "Which network of --workdir: the "
        "mean teacher (what training evaluates) or the student. Default: the one training "
        "evaluated (the teacher; with --model=pi the student, which is its own teacher).")
TOPIC.define("string", "checkpoint", None, "A checkpoint of --workdir other than its latest, e.g. "
        "RUN/checkpoints/ckpt-1000.")
TOPIC.define("string", "saved_model", None, "evaluate, predict: use an exported SavedModel "
        "(python -m semiseg_tf.export) instead of --workdir; its inference options (flip, scales, "
        "tiles) are the ones baked in at export.")
