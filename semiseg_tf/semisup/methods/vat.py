"""Virtual adversarial training (VAT), mean-teacher variant."""
import dataclasses

import tensorflow as tf

from semiseg_tf.models import precision
from semiseg_tf.semisup import losses
from semiseg_tf.semisup.methods.base import Perturbation, student_view, teacher_logits, terms_from_logits


def _normalise_per_sample(vectors):
    """Unit L2 norm per sample, scale-invariantly: dividing by the max first keeps tiny gradients from
    underflowing when squared (ENVIRONMENT.md)."""
    vectors = tf.convert_to_tensor(vectors, tf.float32)
    axes = list(range(1, vectors.shape.rank))
    vectors = vectors / (tf.reduce_max(tf.abs(vectors), axis=axes, keepdims=True) + 1e-30)
    return vectors / (tf.sqrt(tf.reduce_sum(tf.square(vectors), axis=axes, keepdims=True)) + 1e-12)


def _magnitude_picture(perturbation):
    """|perturbation| summed over channels, scaled to [0, 1] per sample, for the panels."""
    magnitude = tf.reduce_sum(tf.abs(perturbation), axis=-1, keepdims=True)
    return magnitude / (tf.reduce_max(magnitude, axis=[1, 2, 3], keepdims=True) + 1e-12)


def _sqrt_elements(images):
    """sqrt(C H W) of a batch of images: the norm of a per-element unit change of one image."""
    return tf.sqrt(tf.cast(tf.reduce_prod(tf.shape(images)[1:]), tf.float32))


def adaptive_radius(images):
    """Half the L2 norm of the image's central differences (step 2) along y and x, per sample
    (the supplement's adaptive radius): a radius that follows the image's own variation. [N, 1, 1, 1]."""
    dy = images[:, 2:, :, :] - images[:, :-2, :, :]
    dx = images[:, :, 2:, :] - images[:, :, :-2, :]
    total = tf.reduce_sum(tf.square(dy), axis=[1, 2, 3]) + tf.reduce_sum(tf.square(dx), axis=[1, 2, 3])
    return tf.reshape(0.5 * tf.sqrt(total), [-1, 1, 1, 1])


class VAT(Perturbation):
    """Virtual adversarial training, mean-teacher variant.

    The adversarial direction is the authors' one power iteration: the gradient, at a probe `d = xi r`
    (r a random unit direction per sample), of the distance D between the direction network's outputs
    on `x_teacher` and on `x_student + d`, normalised. The authors' probe, xi = 1e-6 H W / 1000
    (`authors_probe`; 1.9e-7 per element at 321x321), is near float32 resolution: through a trained
    network its direction has cosine 0.15-0.74 with the first-order one (BENCHMARKS.md, measured by
    benchmarks/vat_probe_cosine.py). The probe here is `probe_scale * sqrt(C H W)`: each element moves by
    about `probe_scale` (1% of a normalised image's spread by default), small enough for the
    first-order regime, large enough to be well above rounding. (An exact Hessian-vector product
    by double backpropagation is not an option: TF defines no second derivative for bilinear
    resizing, which every segmentation network uses.) The probe runs inside the training step's
    tape on its own `tf.GradientTape`, with the direction network in inference mode (batch norm neither
    uses batch statistics nor updates its moving ones), so the student's statistics are updated once
    per step, by its pass on the adversarial input. Under --mixed_precision the probe's passes
    compute in float32 (`models.precision.in_float32`); the adversarial pass is in low precision.
    """
    num_unlabelled_streams = 1

    def __init__(self, radius=0.5, adaptive_radius=False, dir_from_student=False, loss_fn="kld",
                 authors_eval_mode=False, probe_scale=1e-2, authors_probe=False):
        self.radius = float(radius)
        self.adaptive_radius = bool(adaptive_radius)
        self.dir_from_student = bool(dir_from_student)
        self.distance = losses.CONSISTENCY_LOSSES[loss_fn]
        self.authors_eval_mode = bool(authors_eval_mode)
        self.probe_scale = float(probe_scale)
        self.authors_probe = bool(authors_probe)

    @classmethod
    def from_config(cls, cfg):
        # The Vat section's fields are this class's options, by name.
        return cls(loss_fn=cfg.method.cons_loss_fn, **dataclasses.asdict(cfg.vat))

    def sample_extras(self, seed, crop_size):
        return {"vat_noise": tf.random.stateless_normal(tuple(crop_size) + (3,), seed)}

    def direction(self, network, teacher_image, noise, student_image=None):
        """Unit adversarial direction per sample, [N, H, W, 3]; `student_image` None: the student sees
        `teacher_image`."""
        student_image = teacher_image if student_image is None else student_image
        # In float32 even when the network computes in bfloat16 or float16: a probe moving each
        # element by ~1% is about one bfloat16 step of a normalised image, so in low precision
        # the finite difference would be rounding noise.
        with precision.in_float32(network):
            target_logits = tf.stop_gradient(tf.cast(network(teacher_image, training=False),
                                                     tf.float32))
            target_probs = tf.nn.softmax(target_logits, axis=-1)
            probe = _normalise_per_sample(noise) * self.probe_norm(student_image)
            with tf.GradientTape() as tape:
                tape.watch(probe)
                logits = tf.cast(network(student_image + probe, training=False), tf.float32)
                distance = tf.reduce_sum(self.distance(logits, target_logits, target_probs))
        return tf.stop_gradient(_normalise_per_sample(tape.gradient(distance, probe)))

    def probe_norm(self, images):
        """The probe's L2 norm per sample: `probe_scale * sqrt(C H W)`, or the authors'
        1e-6 H W / 1000 (`authors_probe`)."""
        if self.authors_probe:
            shape = tf.cast(tf.shape(images), images.dtype)
            return 1e-6 * shape[1] * shape[2] / 1000.0
        return self.probe_scale * _sqrt_elements(images)

    def terms(self, student, teacher, unlabelled, training=True):
        (batch,) = unlabelled
        teacher_image, student_image = batch["image"], student_view(batch)
        network = student if self.dir_from_student else teacher
        direction = self.direction(network, teacher_image, batch["vat_noise"],
                                   batch.get("student_image"))
        if self.adaptive_radius:
            radius = self.radius * adaptive_radius(student_image)
        else:
            radius = self.radius * _sqrt_elements(student_image)
        adversarial = student_image + radius * direction
        # The authors' bug: the direction network stays in inference mode after the probe.
        student_training = training and not (self.authors_eval_mode and self.dir_from_student)
        teacher_training = training and not (self.authors_eval_mode and not self.dir_from_student)
        return terms_from_logits(
            student(adversarial, training=student_training),
            teacher_logits(teacher, teacher_image, teacher_training), batch["valid"],
            panels={"image": batch["image"], "adversarial_input": adversarial,
                    "perturbation": _magnitude_picture(radius * direction)})
