"""Standard-augmentation consistency: two geometric views of one image."""
import tensorflow as tf

from semiseg_tf.augment import geometric
from semiseg_tf.semisup.methods.base import ConsistencyTerms, Perturbation, teacher_logits


class StandardAugmentation(Perturbation):
    """Standard-augmentation consistency: teacher and student see two geometric views of one
    image; the teacher's probabilities (softmax first, then the warp), logits and valid mask are warped
    into the student's frame by the exact teacher-to-student matrix, bilinear with zero outside. The
    loss counts where both views' valid masks are 1 (the warped one is fractional at its edges).
    """
    num_unlabelled_streams = 1
    paired_views = True

    def terms(self, student, teacher, unlabelled, training=True):
        (batch,) = unlabelled
        matrix = batch["teacher_to_student"]
        size = tuple(batch["student_image"].shape[1:3])
        logits = teacher_logits(teacher, batch["image"], training)
        probs = geometric.warp(tf.nn.softmax(logits, axis=-1), matrix, size, "BILINEAR", 0.0)
        warped_valid = geometric.warp(batch["valid"], matrix, size, "BILINEAR", 0.0)
        return ConsistencyTerms(
            student_logits=student(batch["student_image"], training=training),
            teacher_logits=geometric.warp(logits, matrix, size, "BILINEAR", 0.0),
            teacher_probs=probs,
            teacher_confidence=tf.reduce_max(probs, axis=-1, keepdims=True),
            loss_mask=warped_valid * batch["student_valid"],
            panels={"teacher_view": batch["image"], "student_view": batch["student_image"],
                    "teacher_valid_in_student_frame": warped_valid})


