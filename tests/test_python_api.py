"""The Python route: `import semiseg_tf`, your own tf.data, MeanTeacher through Keras's fit."""
import importlib.util
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import semiseg_tf
from conftest import TINY_RUN, parse_flags
from semiseg_tf import metrics, models, training
from semiseg_tf.augment import boxmask, geometric
from semiseg_tf.data import base, pipeline, synthetic
from semiseg_tf.evaluation import Evaluator
from semiseg_tf.semisup import mean_teacher, methods

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_package_names_its_public_api_and_each_name_resolves():
    public = [name for name in dir(semiseg_tf) if not name.startswith("_")]
    for name in ("build_network", "MeanTeacher", "CutMix", "Cutout", "StandardAugmentation",
                 "ICT", "VAT", "FixMatch", "UniMatch", "training_batches", "evaluation_batches",
                 "Segmenter", "open_model", "MeanIoU"):
        assert name in public and name in semiseg_tf.__all__
    for name in semiseg_tf.__all__:
        assert getattr(semiseg_tf, name).__doc__, name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        semiseg_tf.nothing


def load_example():
    """examples/keras_fit.py as a module (it is a script, outside the package)."""
    spec = importlib.util.spec_from_file_location("keras_fit",
                                                  os.path.join(REPO, "examples", "keras_fit.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_keras_fit_example_is_interrupted_resumes_from_its_backup_and_saves_a_network(
        tmp_path, capsys):
    model, history, scores = load_example().main(str(tmp_path), steps_per_epoch=3, epochs=3)
    printed = capsys.readouterr().out
    assert "interrupted after epoch 1" in printed
    # The second fit started at epoch 2 with the optimiser's state of the first (3 steps), so 9.
    assert history.epoch == [1, 2]
    assert int(model.optimizer.iterations) == 9
    assert {"val_miou", "val_pixel_accuracy", "sup_loss", "cons_loss"} <= set(history.history)
    assert 0 <= scores["miou"] <= 1 and scores["miou"] == pytest.approx(history.history["val_miou"][-1])
    assert "the same as the model's: True" in printed
    assert os.path.isfile(tmp_path / "network.keras")
    assert os.listdir(tmp_path / "tensorboard")
    assert not os.path.exists(tmp_path / "backup")        # deleted once training finished


def in_memory_source(image, label):
    """A one-image DataSource: whatever position a stream is at, it reads this image."""
    class One(synthetic.SyntheticSource):
        def __init__(self):
            self.fixed_image_size = image.shape[:2]
            self.train_images, self.train_labels = image[None], label[None]
            self._read = base.in_memory_reader(self.train_images, self.train_labels)
    return One()


def test_training_batches_of_a_users_dataset_are_the_trainers_samples_of_the_same_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 26, 3), dtype=np.uint8)
    label = rng.integers(0, 3, (20, 26), dtype=np.uint8)
    crop = (16, 16)
    augmentation = geometric.GeometricParams(crop_size=crop, scale_hung=True, hflip=True)
    model = mean_teacher.MeanTeacher(models.build("tiny_unet", 3), models.build("tiny_unet", 3),
                                     methods.mixing.CutMix(boxmask.BoxMaskParams(prop_range=(0.5, 0.5))))
    users = semiseg_tf.training_batches(
        tf.data.Dataset.from_tensors((image, label)), tf.data.Dataset.from_tensors(image), model,
        crop_size=crop, batch_size=2, seed=3, augmentation=augmentation, shuffle_buffer=0,
        start_step=5)
    params = pipeline.PipelineParams(batch_size=2, geometric=augmentation, seed=3)
    trainers = pipeline.InputPipeline(in_memory_source(image, label), np.zeros(1, np.int64),
                                      np.zeros(1, np.int64), params,
                                      perturbation=model.perturbation).train_dataset(5)
    for ours, theirs in zip(users.take(2), trainers.take(2)):
        for a, b in zip(tf.nest.flatten(ours), tf.nest.flatten(theirs)):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    # ...and they are not all alike: the augmentation and the masks differ from step to step.
    first, second = list(users.take(2))
    assert not np.array_equal(first["unlabelled"][0]["mix_mask"], second["unlabelled"][0]["mix_mask"])


def test_the_unlabelled_streams_of_a_users_dataset_pair_different_images():
    images = np.arange(8, dtype=np.uint8)[:, None, None, None] * np.ones((8, 8, 8, 3), np.uint8)
    model = mean_teacher.MeanTeacher(models.build("tiny_unet", 2), models.build("tiny_unet", 2),
                                     methods.mixing.CutMix())
    batches = semiseg_tf.training_batches(
        tf.data.Dataset.from_tensor_slices((images, images[..., 0])),
        tf.data.Dataset.from_tensor_slices(images), model, crop_size=(8, 8), batch_size=4)
    batch = next(iter(batches))
    means = [np.round(s["image"].numpy().mean(axis=(1, 2, 3)), 4) for s in batch["unlabelled"]]
    assert not np.array_equal(means[0], means[1])


def test_a_perturbation_without_unlabelled_data_is_one_line():
    model = mean_teacher.MeanTeacher(models.build("tiny_unet", 2), models.build("tiny_unet", 2),
                                     methods.mixing.CutMix())
    with pytest.raises(ValueError, match="CutMix needs unlabelled images"):
        semiseg_tf.training_batches(tf.data.Dataset.from_tensors((tf.zeros([8, 8, 3]),
                                                                  tf.zeros([8, 8]))),
                                    None, model, crop_size=(8, 8), batch_size=1)


def test_the_miou_metric_equals_numpys_with_an_absent_class_scoring_zero():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, (2, 5, 7))
    labels[0, 0] = 255
    predictions = rng.integers(0, 3, (2, 5, 7))
    # Class 3 of 4 is in neither: its IoU is 0 and counts in the mean, as the authors score it.
    expected_iou = []
    valid = labels != 255
    for c in range(4):
        inter = np.sum((labels == c) & (predictions == c) & valid)
        union = np.sum(((labels == c) | (predictions == c)) & valid)
        expected_iou.append(inter / max(union, 1))
    metric = semiseg_tf.MeanIoU(4)
    metric.update_state(labels[:1], predictions[:1])
    metric.update_state(labels[1:], tf.one_hot(predictions[1:], 4))     # scores: their argmax
    assert float(metric.result()) == pytest.approx(np.mean(expected_iou), abs=1e-6)
    accuracy = semiseg_tf.PixelAccuracy(4)
    accuracy.update_state(labels, predictions)
    assert float(accuracy.result()) == pytest.approx(np.mean(labels[valid] == predictions[valid]))
    metric.reset_state()
    assert float(metric.result()) == 0


def test_model_evaluate_gives_the_trainers_evaluator_miou():
    keras.utils.set_random_seed(0)
    source = synthetic.SyntheticSource(num_train=4, num_val=6, image_size=20)
    model = mean_teacher.MeanTeacher(models.build("tiny_unet", 6), models.build("tiny_unet", 6))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    for weight in model.teacher.trainable_weights:     # a teacher that predicts several classes
        weight.assign(tf.random.normal(weight.shape, stddev=0.5, seed=1))
    evaluator = Evaluator(source, 3, models.input_multiple("tiny_unet"))
    expected = evaluator(model.teacher)
    scores = model.evaluate(pipeline.validation_dataset(source, 3), return_dict=True, verbose=0)
    assert scores["miou"] == pytest.approx(expected["miou"], abs=1e-6)
    assert scores["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"], abs=1e-6)
    assert 0 < expected["miou"] < 1


def test_compile_does_not_throw_a_trained_teacher_away():
    model = mean_teacher.MeanTeacher(models.build("tiny_unet", 2), models.build("tiny_unet", 2))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    teacher = model.teacher.trainable_weights[0]
    np.testing.assert_array_equal(teacher.numpy(), model.student.trainable_weights[0].numpy())
    teacher.assign(teacher + 1.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    assert not np.array_equal(teacher.numpy(), model.student.trainable_weights[0].numpy())
    # The optimiser tracks the student's variables only.
    assert len(model.optimizer.variables) <= 2 * len(model.student.trainable_variables) + 2


def test_metrics_classes_round_trip_through_keras_serialisation():
    metric = metrics.MeanIoU(5)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert isinstance(again, metrics.MeanIoU) and again.num_classes == 5


def test_the_command_line_run_and_a_plain_fit_of_the_same_model_and_data_give_identical_weights(
        tmp_path):
    """The trainer is `fit` with callbacks: its run (with checkpoints, evaluations and pictures
    between the steps) and a user's `fit` without any callback train the same weights, bit for
    bit, optimiser state included."""
    cfg, text = parse_flags(**{**TINY_RUN, "workdir": str(tmp_path / "run"), "train_steps": 5,
                               "perturbation": "cutmix", "cons_weight": 1.0, "image_every": 2})
    cli = training.Trainer(cfg, text, out=open(os.devnull, "w"))
    cli.run()
    keras.utils.set_random_seed(cfg.training.seed)
    source = training.build_source(cfg)
    model = training.build_model(cfg, source.num_classes, source.rgb_mean, source.rgb_std)
    labelled, unlabelled = source.labelled_split(cfg.labelled.n_sup, cfg.labelled.split_seed)
    batches = pipeline.InputPipeline(source, labelled, unlabelled, training.pipeline_params(cfg),
                                     model.perturbation).train_dataset(0)
    initial = [w.numpy() for w in model.student.trainable_weights]
    model.fit(batches, steps_per_epoch=5, epochs=1, verbose=0)
    assert int(model.step.numpy()) == int(cli.model.step.numpy()) == 5
    ours = model.student.weights + model.teacher.weights + model.optimizer.variables
    theirs = cli.model.student.weights + cli.model.teacher.weights + cli.model.optimizer.variables
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # ...and training moved them.
    assert sum(not np.array_equal(a, b.numpy())
               for a, b in zip(initial, model.student.trainable_weights)) > len(initial) // 2


def test_a_library_error_names_the_argument_to_python_and_the_flag_to_the_command(tmp_path,
                                                                                   capsys):
    from semiseg_tf import errors
    missing = str(tmp_path / "nowhere")
    with pytest.raises(errors.ConfigError) as raised:
        semiseg_tf.open_model(workdir=missing)
    assert str(raised.value) == f"workdir={missing!r}: no such folder"
    (tmp_path / "run").mkdir()
    with pytest.raises(errors.ConfigError) as second:
        semiseg_tf.open_model(workdir=str(tmp_path / "run"), saved_model=str(tmp_path))
    assert str(second.value).startswith("give either workdir")
    # What the command prints for the same errors: the flags of the same names.
    assert errors.report(raised.value) == 2 and errors.report(second.value) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --workdir={missing}: no such folder",
        "error: give either --workdir (a training run) or --saved_model (an export)"]
