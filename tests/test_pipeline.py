"""The input pipeline: warps against OpenCV, determinism, resumption, per-sample masks, the split."""
import cv2
import numpy as np
import pytest
import tensorflow as tf

from semiseg_tf.augment import geometric
from semiseg_tf.data import base, pipeline, synthetic
from semiseg_tf.semisup import perturbations


@pytest.fixture(scope="module")
def source():
    return synthetic.SyntheticSource(num_train=30, num_val=4, image_size=24, seed=3)


def make_pipeline(source, seed=0, crop=(16, 16), scale=True):
    labelled, unlabelled = base.labelled_split(source.num_train, 5, 12345)
    params = pipeline.PipelineParams(
        batch_size=3, seed=seed,
        geometric=geometric.GeometricParams(crop_size=crop, scale_hung=scale, hflip=True, vflip=True))
    return pipeline.InputPipeline(source, labelled, unlabelled, params, perturbations.build("cutmix"))


def take(dataset, count):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in dataset.take(count)]


def assert_batches_equal(first, second):
    tf.nest.map_structure(np.testing.assert_array_equal, first, second)


@pytest.mark.parametrize("in_tf_data", [False, True])
def test_geometric_warp_matches_cv2(in_tf_data):
    rng = np.random.RandomState(0)
    image = rng.uniform(0, 255, (30, 40, 3)).astype(np.float32)
    labels = rng.randint(0, 6, (30, 40, 1)).astype(np.int32)
    params = geometric.GeometricParams(crop_size=(24, 20), scale_hung=True, hflip=True, vflip=True)

    def augment(seed):
        matrix = geometric.random_geometric_matrix(seed, 30, 40, params)
        return (matrix, geometric.warp(image, matrix, (24, 20), "BILINEAR", 0.0),
                geometric.warp(labels, matrix, (24, 20), "NEAREST", 255.0))

    seeds = [tf.constant([i, 9], tf.int64) for i in range(12)]
    if in_tf_data:
        results = list(tf.data.Dataset.from_tensor_slices(tf.stack(seeds)).map(augment))
    else:
        results = [augment(s) for s in seeds]
    for matrix, warped, warped_labels in results:
        affine = matrix.numpy()[:2]
        expected = cv2.warpAffine(image, affine, (20, 24), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        expected_labels = cv2.warpAffine(labels[..., 0].astype(np.uint8), affine, (20, 24),
                                         flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                                         borderValue=255)
        assert np.abs(warped.numpy() - expected).max() < 0.01
        np.testing.assert_array_equal(warped_labels.numpy()[..., 0], expected_labels)


def test_hflip_matrix_is_the_authors():
    np.testing.assert_allclose(geometric.flip_matrix(True, False, 256, 256).numpy()[:2],
                               [[-1, 0, 255], [0, 1, 0]])
    np.testing.assert_allclose(geometric.flip_matrix(False, True, 256, 256).numpy()[:2],
                               [[1, 0, 0], [0, -1, 255]])


def test_padding_is_mean_colour_ignore_label_and_invalid(source):
    # A 16 px crop of a 24 px image at scale 0.5 needs 32 px: there must be padding.
    batches = take(make_pipeline(source, crop=(16, 16), scale=True).train_dataset(), 20)
    padded = [(b["labelled"]["image"], b["labelled"]["label"], b["labelled"]["valid"])
              for b in batches]
    images = np.concatenate([p[0] for p in padded])
    labels = np.concatenate([p[1] for p in padded])
    valid = np.concatenate([p[2] for p in padded])[..., 0]
    outside = valid == 0
    assert outside.any() and (valid == 1).any()
    np.testing.assert_array_equal(images[outside], 0.0)   # 0 = the mean colour once normalised
    assert np.all(labels[outside] == 255)


def test_same_seed_same_batches_other_seed_other_batches(source):
    first = take(make_pipeline(source, seed=5).train_dataset(), 3)
    again = take(make_pipeline(source, seed=5).train_dataset(), 3)
    other = take(make_pipeline(source, seed=6).train_dataset(), 3)
    assert_batches_equal(first, again)
    assert not np.array_equal(first[0]["unlabelled"][0]["image"], other[0]["unlabelled"][0]["image"])


def test_resuming_at_step_k_continues_the_same_sequence(source):
    whole = take(make_pipeline(source).train_dataset(0), 5)
    resumed = take(make_pipeline(source).train_dataset(3), 2)
    assert_batches_equal(whole[3:], resumed)


def test_masks_differ_between_samples_and_streams_differ(source):
    # The authors' bug (SPEC 1.4): parallel workers shared random state, so whole batches of masks
    # repeated. Here each sample draws from its own seed, so batches never repeat, and masks are
    # distinct but for rare coincidences (a full-width box has only one horizontal position).
    batches = take(make_pipeline(source, crop=(160, 160)).train_dataset(), 8)
    per_batch = [b["unlabelled"][0]["mix_mask"].reshape(3, -1) for b in batches]
    assert len({m.tobytes() for m in per_batch}) == len(per_batch)
    flat = np.concatenate(per_batch)
    assert len({row.tobytes() for row in flat}) >= len(flat) - 1
    assert "mix_mask" not in batches[0]["unlabelled"][1]
    assert not np.array_equal(batches[0]["unlabelled"][0]["image"],
                              batches[0]["unlabelled"][1]["image"])


def test_labelled_stream_covers_the_labelled_set_each_pass(source):
    labelled, unlabelled = base.labelled_split(source.num_train, 5, 12345)
    assert len(labelled) == 5 and set(labelled) <= set(unlabelled)
    assert len(unlabelled) == source.num_train
    order_seed = tf.constant([1, 2], tf.int64)
    picks = [int(pipeline.stream_index(tf.constant(labelled), p, order_seed)) for p in range(10)]
    assert sorted(picks[:5]) == sorted(labelled) and sorted(picks[5:]) == sorted(labelled)
    assert picks[:5] != picks[5:]   # a fresh permutation each pass (with this seed)


def test_split_is_the_authors_permutation():
    labelled, _ = base.labelled_split(100, 7, 12345)
    np.testing.assert_array_equal(labelled, np.random.RandomState(12345).permutation(100)[:7])
    everything, _ = base.labelled_split(10, -1, 0)
    assert sorted(everything) == list(range(10))


def test_synthetic_scenes_are_deterministic_and_varied():
    images, labels = synthetic.make_scenes([4, 0], 6, 32)
    again, _ = synthetic.make_scenes([4, 0], 6, 32)
    np.testing.assert_array_equal(images, again)
    assert images.dtype == np.uint8 and labels.max() < len(synthetic.CLASS_NAMES)
    assert len(np.unique(labels)) >= 4
    # Boundary pixels blend both sides: no gap, the colours change smoothly across an edge.
    assert not np.array_equal(images, synthetic.make_scenes([5, 0], 6, 32)[0])
