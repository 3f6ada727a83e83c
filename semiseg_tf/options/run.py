"""The run's folder: the one flag every command shares."""
from semiseg_tf.options import Topic

TOPIC = Topic("The run folder", __name__)

TOPIC.define("string", "workdir", None, "The run's folder: its flags, run.json (classes, palette, "
        "input normalisation), checkpoints, TensorBoard events, metrics.json. train: running the "
        "same command again resumes from the last checkpoint; evaluate, predict, export: the "
        "trained run to use.")
