"""What a run shows while it trains: evaluations, pictures, and its flags in TensorBoard."""
import os

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from semiseg_tf import visualise
from semiseg_tf.training import run_folder


def enlargement(height):
    """How much to enlarge pictures of `height`-pixel crops so they are readable (the demo's are
    64 px), in whole steps so label pixels stay sharp."""
    return max(1, min(4, 200 // max(height, 1)))


class Reports:
    """The run's TensorBoard writers, scores and pictures. Only the chief writes (`is_chief`);
    the other workers' writers write nothing."""

    def __init__(self, cfg, source, model, evaluator, pipeline, flagfile_text, is_chief, say):
        self.cfg, self.workdir = cfg, cfg.run.workdir
        self.source, self.model, self.evaluator, self.pipeline = source, model, evaluator, pipeline
        self.flagfile_text, self.say = flagfile_text, say
        self.tb_dir = os.path.join(cfg.run.workdir, run_folder.TENSORBOARD_DIR)
        if is_chief:
            self.train_writer = tf.summary.create_file_writer(os.path.join(self.tb_dir, "train"))
            self.eval_writer = tf.summary.create_file_writer(os.path.join(self.tb_dir, "eval"))
        else:
            self.train_writer = self.eval_writer = tf.summary.create_noop_writer()

    def flush(self):
        self.train_writer.flush()
        self.eval_writer.flush()

    def evaluate(self, step):
        result = self.evaluator(self.model.teacher)
        confusion_png, _ = visualise.confusion_picture(result["confusion"], self.source.class_names)
        examples = self.validation_panel()
        with self.eval_writer.as_default(step=step):
            tf.summary.scalar("miou", result["miou"])
            tf.summary.scalar("pixel_accuracy", result["pixel_accuracy"])
            for name, iou in result["per_class_iou"].items():
                tf.summary.scalar(f"iou/{name}", iou)
            tf.summary.image("confusion_matrix", confusion_png[None])
            tf.summary.image("validation/image_truth_prediction", examples[None])
        self.save_panel("confusion.png", confusion_png)
        self.save_panel("validation.png", examples)
        classes = "  ".join(f"{n} {100 * v:.1f}" for n, v in result["per_class_iou"].items())
        self.say(f"eval @ step {step}: mIoU {100 * result['miou']:.2f}%, pixel accuracy "
                    f"{100 * result['pixel_accuracy']:.2f}%  ({classes})")
        return result

    def validation_panel(self, count=4):
        """A titled picture of the first `count` validation images: image, truth, prediction."""
        images, labels, predictions = self.evaluator.examples(self.model.teacher, count)
        palette = self.source.palette
        rows = [[visualise.display_rgb(image), visualise.colourise(label, palette),
                 visualise.colourise(prediction, palette)]
                for image, label, prediction in zip(images, labels, predictions)]
        return visualise.panel(rows, titles=["image", "truth", "prediction"],
                               scale=enlargement(images[0].shape[0]))

    def save_panel(self, name, picture):
        run_folder.save_panel(self.workdir, name, picture)

    def write_run_summary(self):
        """The run's flags into TensorBoard, as text and as hparams (so runs compare side by side)."""
        lines = "\n".join(f"    {line}" for line in self.flagfile_text.splitlines())
        with self.train_writer.as_default(step=0):
            tf.summary.text("flags", f"Training flags of `{self.workdir}`:\n\n{lines}")
        hparams = {}
        for name, value in vars(self.cfg).items():
            if name == "workdir" or value is None:
                continue
            hparams[name] = value if isinstance(value, (bool, int, float, str)) else str(value)
        # The hparams plugin takes the run folder's own events as the trial, and the scalars of
        # its sub-folders (eval/miou, ...) as the trial's metrics.
        writer = tf.summary.create_file_writer(self.tb_dir)
        with writer.as_default():
            hparams_api.hparams(hparams, trial_id=os.path.basename(self.workdir))
        writer.close()

    def write_panels(self, step, count=4):
        """TensorBoard images (and panels/latest.png) of the consistency inputs and outputs."""
        if not self.model.uses_unlabelled:
            return
        batch = next(iter(self.pipeline.train_dataset(step).take(1)))
        # One loss, or several (UniMatch's strong views and feature stream), each with a prediction.
        streams = [(stream.name, stream.terms) for stream in self.model.perturbation.consistency(
            self.model.student, self.model.teacher, batch["unlabelled"], training=False)]
        terms = streams[0][1]
        mean, std = self.source.rgb_mean, self.source.rgb_std
        palette = self.source.palette
        columns = {}
        for name, images in [item for _, t in streams for item in t.panels.items()]:
            images = images[:count].numpy()
            if images.shape[-1] != len(mean):
                columns[name] = visualise.grey_to_rgb(images)       # a mask
            elif self.source.pixels.photo:
                columns[name] = visualise.to_uint8_rgb(images, mean, std)
            else:
                columns[name] = visualise.display_rgb(images)
        columns["teacher_target"] = visualise.colourise(
            np.argmax(terms.teacher_probs[:count].numpy(), axis=-1), palette)
        if self.model.conf_per_pixel and self.model.conf_thresh > 0:
            # The target where it counts (FixMatch's pseudo-label): unconfident pixels grey.
            confident = columns["teacher_target"].copy()
            unconfident = terms.teacher_confidence[:count].numpy()[..., 0] < self.model.conf_thresh
            confident[unconfident] = 128
            columns["confident_target"] = confident
        for name, stream_terms in streams:
            columns[f"{name}_prediction" if name else "student_prediction"] = visualise.colourise(
                np.argmax(stream_terms.student_logits[:count].numpy(), axis=-1), palette)
        with self.train_writer.as_default(step=step):
            for name, images in columns.items():
                tf.summary.image(f"consistency/{name}", images, max_outputs=count)
        rows = [[columns[name][i] for name in columns] for i in range(len(columns["teacher_target"]))]
        picture = visualise.panel(rows, titles=[name.replace("_", " ") for name in columns],
                                  scale=enlargement(rows[0][0].shape[0]))
        self.save_panel("latest.png", picture)
