"""Mixed precision and XLA: a low-precision step against the float32 one, float16's loss scaling,
VAT's probe in float32, and an XLA-compiled step against the plain one."""
import json
import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY_RUN, parse_flags
from semiseg_tf import config, models, training
from semiseg_tf.models import precision
from semiseg_tf.semisup import methods

# SGD without momentum: the update is the learning rate times the gradient, so comparing updates
# compares gradients (Adam's first step moves every weight by about the learning rate, whatever
# the gradient's precision).
# deeplab2_small: a network without max pooling, whose gradient is smooth in its inputs (the U-nets'
# max pooling switches its argmax under 0.4% input noise, which changes their gradient by ~25% even
# in float32, so their precision cannot be compared by one step).
SGD = {"opt_type": "sgd", "sgd_momentum": 0.0, "learning_rate": 0.5, "conf_thresh": 0.0,
       "cons_weight": 1.0, "teacher_alpha": 0.5, "arch": "deeplab2_small"}


def trainer_of(tmp_path, name, **overrides):
    cfg, text = parse_flags(**{**TINY_RUN, "workdir": str(tmp_path / name), **overrides})
    return training.Trainer(cfg, text, out=open(os.devnull, "w"))


def float_weights(model):
    return [v for v in model.student.weights + model.teacher.weights
            if keras.backend.is_float_dtype(v.dtype)]


def relative_error(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_a_bfloat16_step_stays_close_to_the_float32_step_and_keeps_float32_state(tmp_path):
    """From the same weights and batch: the losses within 1% (supervised) and 5% (consistency), and
    the student's and teacher's updates within 5% (relative L2 over all weights; 2.2% and 0.7%
    measured) of float32's; every variable, the teacher's and the batch-norm statistics included,
    stays float32 while the convolutions compute in bfloat16."""
    reference = trainer_of(tmp_path, "f32", **SGD)
    low = trainer_of(tmp_path, "bf16", mixed_precision="bfloat16", **SGD)
    assert precision.compute_dtype(low.model.student) == "bfloat16"
    assert precision.compute_dtype(low.model.teacher) == "bfloat16"
    assert precision.compute_dtype(reference.model.student) == "float32"
    assert keras.config.dtype_policy().name == "float32"      # the global policy is put back
    # A few float32 steps first: at initialisation the network's output hardly depends on its
    # input, so the consistency loss would be ~0.
    batches = iter(reference.pipeline.train_dataset(0))
    train_step = tf.function(reference.model.train_step)
    for step in range(1, 4):
        train_step(next(batches), tf.constant(step, tf.int64))
    for target, source in zip(float_weights(low.model) + low.model.optimizer.variables,
                              float_weights(reference.model) + reference.model.optimizer.variables):
        target.assign(source)
    before = [v.numpy() for v in float_weights(reference.model)]
    batch = next(batches)
    logs = {name: tf.function(trainer.model.train_step)(batch, tf.constant(4, tf.int64))
            for name, trainer in (("f32", reference), ("bf16", low))}
    # The consistency loss, a squared difference of probabilities, is the more sensitive (2%).
    for key, tolerance in (("sup_loss", 0.01), ("cons_loss", 0.05)):
        f32, bf16 = float(logs["f32"][key]), float(logs["bf16"][key])
        assert f32 > 0 and abs(bf16 - f32) <= tolerance * f32, (key, f32, bf16)
    assert float(logs["f32"]["sup_loss"]) != float(logs["bf16"]["sup_loss"])   # really bfloat16
    for v in float_weights(low.model) + low.model.optimizer.variables:
        if keras.backend.is_float_dtype(v.dtype):
            assert v.dtype == "float32", v.path
    n_student = len(low.model.student.weights)
    updates = {name: np.concatenate([(v.numpy() - b).ravel() for v, b in
                                     zip(float_weights(trainer.model), before)])
               for name, trainer in (("f32", reference), ("bf16", low))}
    sizes = np.cumsum([b.size for b in before])
    split = sizes[n_student - 1]
    student_error = relative_error(updates["bf16"][:split], updates["f32"][:split])
    teacher_error = relative_error(updates["bf16"][split:], updates["f32"][split:])
    assert student_error < 0.05 and teacher_error < 0.05, (student_error, teacher_error)
    assert np.abs(updates["f32"][split:]).max() > 0          # the teacher moved (EMA at 0.5)


def test_a_float16_overflow_is_skipped_counted_and_leaves_the_teacher(tmp_path):
    """A loss scale so large that the scaled loss overflows: the step changes no weight, statistic
    or optimiser step, halves the scale, counts an overflow (not a divergence); with a sane scale
    the next step trains."""
    trainer = trainer_of(tmp_path, "f16", mixed_precision="float16", on_nonfinite="stop", **SGD)
    model = trainer.model
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert precision.compute_dtype(model.student) == "float16"
    batch = next(iter(trainer.pipeline.train_dataset(0)))
    step = tf.function(model.train_step)
    model.optimizer.dynamic_scale.assign(3e38)
    before = [v.numpy() for v in model.student.variables + model.teacher.variables]
    logs = step(batch, tf.constant(1, tf.int64))
    assert np.isfinite(float(logs["sup_loss"])) and float(logs["nonfinite"]) == 1.0
    for a, b in zip(before, model.student.variables + model.teacher.variables):
        np.testing.assert_array_equal(a, b.numpy(), err_msg=b.path)
    assert int(model.overflow_steps.numpy()) == 1
    assert int(model.nonfinite_steps.numpy()) == 0        # an overflow is not a divergence
    assert int(model.optimizer.iterations.numpy()) == 0
    assert float(model.optimizer.dynamic_scale.numpy()) == pytest.approx(1.5e38)
    guard = training.callbacks.NonFiniteGuard(every=1)
    guard.set_model(model)
    guard.check_steps()                                    # --on_nonfinite=stop does not stop
    model.optimizer.dynamic_scale.assign(1024.0)
    step(batch, tf.constant(2, tf.int64))
    assert int(model.optimizer.iterations.numpy()) == 1
    assert int(model.overflow_steps.numpy()) == 1
    teacher_now = [v.numpy() for v in model.teacher.weights]
    assert any(not np.array_equal(a, b) for a, b in
               zip(before[len(model.student.variables):], teacher_now))


def test_a_float16_step_unscales_its_gradient(tmp_path):
    """The float16 update equals float32's within float16's precision: the gradient of the scaled
    loss is divided by the scale again (a missing unscale would be 1024 times too large)."""
    reference = trainer_of(tmp_path, "f32", **SGD)
    low = trainer_of(tmp_path, "f16", mixed_precision="float16", **SGD)
    for target, source in zip(float_weights(low.model), float_weights(reference.model)):
        target.assign(source)
    low.model.optimizer.dynamic_scale.assign(1024.0)
    before = [v.numpy() for v in reference.model.student.trainable_weights]
    batch = next(iter(reference.pipeline.train_dataset(0)))
    for trainer in (reference, low):
        tf.function(trainer.model.train_step)(batch, tf.constant(1, tf.int64))
    update = {name: np.concatenate([(v.numpy() - b).ravel() for v, b in
                                    zip(t.model.student.trainable_weights, before)])
              for name, t in (("f32", reference), ("f16", low))}
    assert relative_error(update["f16"], update["f32"]) < 0.02


def test_vat_probe_is_computed_in_float32_under_bfloat16():
    """The adversarial direction of a bfloat16 network equals the one of the same network in
    float32 (cosine > 0.999); the probe moves each element by ~1%, about one bfloat16 step, so
    computed in bfloat16 its direction is far off."""
    keras.utils.set_random_seed(3)
    with precision.building_in("bfloat16"):
        network = models.build("deeplab2_small", 4)
    images = tf.random.normal([2, 32, 32, 3])
    noise = tf.random.normal(images.shape, seed=1)
    vat = methods.vat.VAT(loss_fn="kld")
    direction = tf.function(lambda: vat.direction(network, images, noise))().numpy()
    with precision.in_float32(network):
        exact = tf.function(lambda: vat.direction(network, images, noise))().numpy()
    assert precision.compute_dtype(network) == "bfloat16"      # put back after the probe

    def cosine(a, b):
        return float(np.sum(a * b) / np.linalg.norm(a) / np.linalg.norm(b))
    assert cosine(direction, exact) > 0.999
    # The same probe through the bfloat16 passes (what happened before the probe was in float32).
    plain = tf.function(lambda: _direction_in_network_precision(vat, network, images, noise))()
    assert cosine(plain.numpy(), exact) < 0.9


def _direction_in_network_precision(vat, network, images, noise):
    target = tf.cast(network(images, training=False), tf.float32)
    probe = methods.vat._normalise_per_sample(noise) * (
        vat.probe_scale * methods.vat._sqrt_elements(images))
    with tf.GradientTape() as tape:
        tape.watch(probe)
        logits = tf.cast(network(images + probe, training=False), tf.float32)
        distance = tf.reduce_sum(vat.distance(logits, target, tf.nn.softmax(target)))
    return methods.vat._normalise_per_sample(tape.gradient(distance, probe))


def test_an_xla_compiled_step_equals_the_plain_one_on_one_cpu_device(tmp_path):
    """Three CutMix steps through the trainer's step function with --jit_compile and without, from
    the same seed: students and teachers agree to float32 rounding."""
    trainers = [trainer_of(tmp_path, f"xla_{jit}", jit_compile=jit, cons_weight=1.0)
                for jit in ("true", "false")]
    initial = [v.numpy() for v in float_weights(trainers[1].model)]
    for trainer in trainers:
        step_fn = trainer.model.make_train_function()
        iterator = iter(trainer.training_batches(0))
        for _ in range(3):
            step_fn(iterator)
    compiled, plain = (float_weights(t.model) for t in trainers)
    for a, b in zip(compiled, plain):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5, err_msg=a.path)
    # ...and the steps really trained: most weights left their initial values.
    moved = sum(not np.allclose(a.numpy(), b) for a, b in zip(plain, initial))
    assert moved > len(plain) // 2


def test_jit_compile_over_cpu_devices_is_refused_in_one_line():
    cfg, _ = parse_flags(**{**TINY_RUN, "workdir": "/nonexistent", "jit_compile": "true",
                            "strategy": "mirrored"})
    with pytest.raises(config.ConfigError, match=r"^--jit_compile: XLA cannot compile a step "
                                                 r"spread over 2 CPU devices"):
        training.check_jit_compile(cfg, types.SimpleNamespace(num_replicas_in_sync=2))
    training.check_jit_compile(cfg, types.SimpleNamespace(num_replicas_in_sync=1))


def test_xla_compiles_a_mixed_precision_step(tmp_path):
    """XLA refuses mixed dtypes in one op: the bilinear upsampling's gradient (float32) must meet a
    float32 input (see models.layers.ResizeLike), or a bfloat16 step does not compile."""
    trainer = trainer_of(tmp_path, "xla_bf16", jit_compile="true", mixed_precision="bfloat16")
    logs = trainer.model.make_train_function()(iter(trainer.training_batches(0)))
    assert np.isfinite(float(logs["sup_loss"])) and float(logs["nonfinite"]) == 0.0


def test_auto_precision_is_bfloat16_only_where_every_training_device_computes_it_natively():
    assert precision.choose("auto", [], {"fpu", "avx2", "amx_bf16"})[0] == "bfloat16"
    assert precision.choose("auto", [], {"fpu", "avx512f", "avx512_bf16"})[0] == "bfloat16"
    assert precision.choose("auto", [], {"fpu", "avx2", "avx512f"}) == (
        "float32", "the CPU has no native bfloat16 (amx_bf16 or avx512_bf16)")
    # GPUs decide, whatever the CPU has; the oldest of them decides.
    assert precision.choose("auto", [(8, 0), (9, 0)], set())[0] == "bfloat16"
    assert precision.choose("auto", [(8, 6), (7, 5)], {"amx_bf16"}) == (
        "float32", "a GPU of compute capability 7.5 has no native bfloat16 (8.0 and later do)")
    assert precision.choose("float16", [], {"amx_bf16"}) == ("float16", "as asked")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512_bf16 amx_tile\n"
                                      "processor\t: 1\nflags\t\t: fpu sse2 avx512_bf16 amx_tile\n")
    assert precision.cpu_flags(str(tmp_path / "cpuinfo")) == {"fpu", "sse2", "avx512_bf16",
                                                              "amx_tile"}
    assert precision.cpu_flags(str(tmp_path / "none")) == set()


@pytest.mark.parametrize("flags,expected", [({"amx_bf16"}, "bfloat16"), (set(), "float32")])
def test_a_run_with_auto_precision_says_what_it_chose_builds_in_it_and_records_it(
        tmp_path, monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    cfg, text = parse_flags(**{**TINY_RUN, "workdir": str(tmp_path / "run"),
                               "mixed_precision": "auto"})
    said = []
    trainer = training.Trainer(cfg, text, out=types.SimpleNamespace(
        write=said.append, flush=lambda: None))
    assert f"--mixed_precision=auto: {expected}, since " in "".join(said)
    assert precision.compute_dtype(trainer.model.student) == expected
    with open(tmp_path / "run" / "run.json") as f:
        assert json.load(f)["training"]["precision"] == expected
