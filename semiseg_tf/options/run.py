"""The run's folder: the one flag every command shares."""
import dataclasses
import os

from semiseg_tf.options import Section, Topic, absolute_path

TOPIC = Topic("The run folder", __name__)

TOPIC.define("string", "workdir", None, "The run's folder: its flags, run.json (classes, palette, "
        "input normalisation), checkpoints, TensorBoard events, metrics.json. train: running the "
        "same command again resumes from the last checkpoint; evaluate, predict, export: the "
        "trained run to use.")


@dataclasses.dataclass(frozen=True)
class Run(Section):
    TOPIC = TOPIC
    PARSE = {"workdir": absolute_path}
    workdir: str

    def check(self):
        self.require(self.workdir, "workdir", "a run folder is required")
        self.require(not os.path.isfile(self.workdir), "workdir", "is a file, not a folder")
