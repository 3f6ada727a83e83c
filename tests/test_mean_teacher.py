"""The training step: EMA teacher in closed form, L2 weight decay, learning-rate schedules."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from semiseg_tf import models
from semiseg_tf.semisup import mean_teacher, optim


def random_labelled_batch(rng, size=8, classes=6):
    return {"labelled": {"image": tf.constant(rng.normal(size=(2, size, size, 3)), tf.float32),
                         "label": tf.constant(rng.randint(0, classes, (2, size, size)), tf.int32)}}


def test_teacher_is_ema_of_student_in_closed_form():
    keras.utils.set_random_seed(0)
    alpha, steps = 0.9, 3
    model = mean_teacher.MeanTeacher(models.build("tiny_unet", 6), models.build("tiny_unet", 6),
                                     cons_weight=0.0, teacher_alpha=alpha)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.initialise((8, 8, 3))
    student_history = [[w.numpy() for w in model.student.weights]]
    rng = np.random.RandomState(0)
    for _ in range(steps):
        model.train_step(random_labelled_batch(rng))
        student_history.append([w.numpy() for w in model.student.weights])
    # t_k = alpha^k s_0 + sum_i (1 - alpha) alpha^(k - i) s_i   (the teacher starts as a copy of s_0)
    names = [w.path for w in model.student.weights]
    assert any("moving_mean" in n for n in names) and any("moving_variance" in n for n in names)
    for index, teacher_weight in enumerate(model.teacher.weights):
        expected = alpha ** steps * student_history[0][index]
        for i in range(1, steps + 1):
            expected = expected + (1 - alpha) * alpha ** (steps - i) * student_history[i][index]
        np.testing.assert_allclose(teacher_weight.numpy(), expected, rtol=1e-5, atol=1e-6,
                                   err_msg=names[index])
    # ...and the students really moved, batch-norm statistics included.
    moving = [i for i, n in enumerate(names) if "moving_mean" in n]
    assert not np.allclose(student_history[0][moving[0]], student_history[-1][moving[0]])


def test_sgd_weight_decay_is_l2_on_the_gradient():
    rng = np.random.RandomState(1)
    student = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(6, 1)])
    teacher = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(6, 1)])
    lr, decay = 0.1, 0.01
    model = mean_teacher.MeanTeacher(student, teacher, cons_weight=0.0, weight_decay=decay)
    model.compile(optimizer=optim.build_optimizer("sgd", lr, sgd_momentum=0.0))
    model.initialise((4, 4, 3))
    batch = random_labelled_batch(rng, size=4)
    before = [w.numpy() for w in student.trainable_weights]
    with tf.GradientTape() as tape:
        logits = student(batch["labelled"]["image"], training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            batch["labelled"]["label"], logits))
    grads = [g.numpy() for g in tape.gradient(loss, student.trainable_weights)]
    model.train_step(batch)
    for w0, g, w1 in zip(before, grads, student.trainable_weights):
        np.testing.assert_allclose(w1.numpy(), w0 - lr * (g + decay * w0), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind, step, expected", [
    ("none", 70, 1.0),
    ("poly", 0, 1.0),
    ("poly", 50, 0.5 ** 0.9),
    ("poly", 100, 0.0),
    ("cosine", 0, 1.0),
    ("cosine", 50, 0.5),
    ("cosine", 25, (1 + np.cos(np.pi / 4)) / 2),
    ("stepped", 19, 1.0),
    ("stepped", 20, 0.1),
    ("stepped", 60, 0.01),
])
def test_schedules(kind, step, expected):
    schedule = optim.AuthorsSchedule(kind, 1.0, 100, poly_power=0.9, step_boundaries=(20, 60),
                                     step_gamma=0.1)
    np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-6, atol=1e-7)


def test_teacher_forward_uses_batch_statistics_like_the_authors():
    keras.utils.set_random_seed(1)
    model = mean_teacher.MeanTeacher(models.build("tiny_unet", 6), models.build("tiny_unet", 6))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.initialise((8, 8, 3))
    images = tf.random.normal((2, 8, 8, 3), mean=3.0)
    moving_mean = [w for w in model.teacher.weights if "moving_mean" in w.path][0]
    before = moving_mean.numpy()
    batch_stats = model.teacher(images, training=True)
    # Batch statistics differ from the (fresh) moving statistics, and the forward updates the latter.
    assert not np.allclose(batch_stats, model.teacher(images, training=False))
    assert not np.allclose(moving_mean.numpy(), before)
    assert all(v.trainable for v in model.teacher.trainable_variables)
    assert not set(map(id, model.teacher.weights)) & set(map(id, model.optimizer.variables))


@pytest.mark.parametrize("from_unlabelled", [True, False])
def test_batch_norm_statistics_from_unlabelled_passes_only_on_request(from_unlabelled):
    """With --nobn_stats_from_unlabelled a CutMix step leaves the same moving statistics as a
    supervised step on the same labelled batch (student and EMA teacher); by default it does not."""
    from semiseg_tf.augment import boxmask
    from semiseg_tf.semisup import methods

    def make(perturbation):
        keras.utils.set_random_seed(4)
        model = mean_teacher.MeanTeacher(
            models.build("tiny_unet", 6), models.build("tiny_unet", 6), perturbation,
            cons_weight=1.0 if perturbation else 0.0, conf_thresh=0.0,
            bn_stats_from_unlabelled=from_unlabelled)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        model.initialise((8, 8, 3))
        return model

    rng = np.random.RandomState(5)
    data = random_labelled_batch(rng)
    mix = tf.stack([boxmask.box_mask(tf.constant([i, 0], tf.int64), 8, 8, boxmask.BoxMaskParams())
                    for i in range(2)])
    # Unlabelled images of another distribution, so their statistics differ from the labelled ones.
    data["unlabelled"] = tuple(
        {"image": tf.constant(rng.normal(3.0, 2.0, (2, 8, 8, 3)), tf.float32),
         "valid": tf.ones((2, 8, 8, 1)), "mix_mask": mix} for _ in range(2))
    semi, supervised = make(methods.mixing.CutMix()), make(None)
    semi.train_step(data)
    supervised.train_step({"labelled": data["labelled"]})
    for part in ("student", "teacher"):
        pairs = [(a, b) for a, b in zip(getattr(semi, part).weights, getattr(supervised, part).weights)
                 if "moving_" in a.path]
        assert pairs
        same = all(np.allclose(a.numpy(), b.numpy(), atol=1e-6) for a, b in pairs)
        assert same != from_unlabelled, part
