"""The input pipeline: warps against OpenCV, determinism, resumption, per-sample masks, the split."""
import colorsys

import cv2
import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf
from PIL import Image, ImageFilter

from semiseg_tf.augment import blur, colour, geometric
from semiseg_tf.data import base, pipeline, synthetic
from semiseg_tf.semisup import methods


@pytest.fixture(scope="module")
def source():
    return synthetic.SyntheticSource(num_train=30, num_val=4, image_size=24, seed=3)


def pipeline_with(source, params, perturbation="cutmix"):
    """The input pipeline of `source` with 5 labelled images (split seed 12345) and `params`."""
    labelled, unlabelled = base.labelled_split(source.num_train, 5, 12345)
    return pipeline.InputPipeline(source, labelled, unlabelled, params,
                                  methods.base.build(perturbation))


def make_pipeline(source, seed=0, crop=(16, 16), scale=True):
    return pipeline_with(source, pipeline.PipelineParams(
        batch_size=3, seed=seed,
        geometric=geometric.GeometricParams(crop_size=crop, scale_hung=scale, hflip=True, vflip=True)))


def blur_fit_residual(blurred, image):
    """How far `blurred` is from the Gaussian blur of `image` with the best-fitting sigma of the
    range (the largest absolute difference)."""
    fit = scipy.optimize.minimize_scalar(
        lambda s: np.abs(blurred - blur.gaussian_blur(tf.constant(image), s).numpy()).max(),
        bounds=blur.SIGMA_RANGE, method="bounded", options={"xatol": 1e-6})
    return fit.fun


def take(dataset, count):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in dataset.take(count)]


def assert_batches_equal(first, second):
    tf.nest.map_structure(np.testing.assert_array_equal, first, second)


GEOMETRIC_OPS = {
    "hung_scale_flips": geometric.GeometricParams(crop_size=(24, 20), scale_hung=True, hflip=True,
                                                  vflip=True),
    "random_crop_padded": geometric.GeometricParams(crop_size=(36, 44), hflip=True),
    "rotate_scale_reflect": geometric.GeometricParams(crop_size=(24, 24), rot_mag=45.0, max_scale=1.5,
                                                      scale_non_uniform=True, hvflip=True,
                                                      hflip=True),
}
CV2_BORDERS = {"CONSTANT": cv2.BORDER_CONSTANT, "REFLECT_101": cv2.BORDER_REFLECT_101}


def assert_warp_matches_cv2(image, labels, matrix, params, warped, warped_labels):
    crop_h, crop_w = params.crop_size
    affine = np.asarray(matrix)[:2]
    expected = cv2.warpAffine(image, affine, (crop_w, crop_h), flags=cv2.INTER_LINEAR,
                              borderMode=CV2_BORDERS[params.image_border], borderValue=0)
    expected_labels = cv2.warpAffine(labels[..., 0].astype(np.uint8), affine, (crop_w, crop_h),
                                     flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                                     borderValue=255)
    assert np.abs(np.asarray(warped) - expected).max() < 0.01
    np.testing.assert_array_equal(np.asarray(warped_labels)[..., 0], expected_labels)


@pytest.mark.parametrize("in_tf_data", [False, True])
@pytest.mark.parametrize("op", sorted(GEOMETRIC_OPS))
def test_geometric_warp_matches_cv2(op, in_tf_data):
    rng = np.random.RandomState(0)
    image = rng.uniform(0, 255, (30, 40, 3)).astype(np.float32)
    labels = rng.randint(0, 6, (30, 40, 1)).astype(np.int32)
    params = GEOMETRIC_OPS[op]

    def augment(seed):
        matrix = geometric.random_geometric_matrix(seed, 30, 40, params)
        return (matrix, geometric.warp(image, matrix, params.crop_size, "BILINEAR", 0.0,
                                       params.image_border),
                geometric.warp(labels, matrix, params.crop_size, "NEAREST", 255.0))

    seeds = [tf.constant([i, 9], tf.int64) for i in range(12)]
    if in_tf_data:
        results = list(tf.data.Dataset.from_tensor_slices(tf.stack(seeds)).map(augment))
    else:
        results = [augment(s) for s in seeds]
    for matrix, warped, warped_labels in results:
        assert_warp_matches_cv2(image, labels, matrix.numpy(), params, warped.numpy(),
                                warped_labels.numpy())


PAIR_OPS = {
    "hung_scale_offset_flips": geometric.GeometricParams(crop_size=(16, 16), scale_hung=True,
                                                         hflip=True, vflip=True, crop_offset=5.0),
    "crop_offset": geometric.GeometricParams(crop_size=(16, 12), hflip=True, crop_offset=6.0),
    "free_rotate_scale": geometric.GeometricParams(crop_size=(16, 16), rot_mag=30.0, max_scale=1.3,
                                                   hvflip=True, crop_offset=4.0,
                                                   free_scale_rot=True),
}


@pytest.mark.parametrize("in_tf_data", [False, True])
@pytest.mark.parametrize("op", sorted(PAIR_OPS))
def test_paired_views_match_cv2_and_the_composed_matrix_maps_one_onto_the_other(op, in_tf_data):
    params = PAIR_OPS[op]
    # A smooth image, so that resampling twice (rotations) stays close to resampling once.
    ys, xs = np.mgrid[0:28, 0:28]
    image = np.stack([np.sin(0.3 * xs + c) + np.cos(0.25 * ys - c) for c in range(3)],
                     axis=-1).astype(np.float32)

    def views(seed):
        return (pipeline.augment_pair(tf.constant(image), seed, params),
                geometric.random_geometric_pair(seed, 28, 28, params))

    seeds = [tf.constant([i, 4], tf.int64) for i in range(10)]
    if in_tf_data:
        results = list(tf.data.Dataset.from_tensor_slices(tf.stack(seeds)).map(views))
    else:
        results = [views(seed) for seed in seeds]
    offsets, compared = [], 0
    for pair, (first, second) in results:
        zeros = np.zeros(image.shape[:2] + (1,), np.int32)
        for matrix, view in ((first, pair["image"]), (second, pair["student_image"])):
            assert_warp_matches_cv2(image, zeros, matrix.numpy(), params, view.numpy(),
                                    geometric.warp(zeros, matrix, params.crop_size, "NEAREST", 255))
        # Warping the teacher's view by the composed matrix gives the student's view wherever every
        # source pixel it needs lies inside the teacher's view (warped valid mask 1). With Hung scale
        # or crops the teacher's view holds source pixels exactly, so this is exact; with rotations
        # it is a resampling of a resampling, close but not equal.
        size = params.crop_size
        mapped = geometric.warp(pair["image"], pair["teacher_to_student"], size).numpy()
        inside = (geometric.warp(pair["valid"], pair["teacher_to_student"], size).numpy()[..., 0]
                  > 0.999) & (pair["student_valid"].numpy()[..., 0] > 0.999)
        compared += inside.sum()
        difference = np.abs(mapped - pair["student_image"].numpy())[inside]
        tolerance = 0.05 if params.rotate_scale else 1e-4
        if inside.any():
            assert np.median(difference) < tolerance / 5 and difference.max() < tolerance
        offsets.append(np.abs(pair["teacher_to_student"].numpy()[:2, 2]).max())
    assert compared > 200
    assert max(offsets) > 0


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
    # The authors' bug: parallel workers shared random state, so whole batches of masks
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


def test_representative_split_is_the_candidate_nearest_the_class_shares():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 50, (60, 4)) * (rng.random((60, 4)) < 0.5)   # pixels per class per image
    labelled, unlabelled = base.representative_split(counts, 6, 99, candidates=10)
    assert list(unlabelled) == list(range(60))
    # The oracle: the 10 candidates, in the order one RandomState(99) draws them, scored by hand.
    draw = np.random.RandomState(99)
    whole = counts.sum(0) / counts.sum()
    distances, subsets = [], []
    for _ in range(10):
        subset = draw.permutation(60)[:6]
        shares = counts[subset].sum(0) / counts[subset].sum()
        distances.append(sum(abs(a - b) for a, b in zip(shares, whole)))
        subsets.append(subset)
    np.testing.assert_array_equal(labelled, subsets[int(np.argmin(distances))])
    assert np.argmin(distances) != 0   # this draw does pick another candidate than the first
    # One candidate is the authors' permutation.
    np.testing.assert_array_equal(base.representative_split(counts, 6, 99, candidates=1)[0],
                                  base.labelled_split(60, 6, 99)[0])


def test_synthetic_source_picks_a_representative_labelled_subset_unless_told_not_to():
    source = synthetic.SyntheticSource(num_train=40, num_val=2, image_size=16, seed=3)
    counts = np.stack([np.bincount(label.ravel(), minlength=6) for label in source.train_labels])
    np.testing.assert_array_equal(source.labelled_split(5, 12345)[0],
                                  base.representative_split(counts, 5, 12345)[0])
    plain = synthetic.SyntheticSource(num_train=40, num_val=2, image_size=16, seed=3,
                                      representative_split=False)
    np.testing.assert_array_equal(plain.labelled_split(5, 12345)[0],
                                  base.labelled_split(40, 5, 12345)[0])


def test_synthetic_scenes_are_deterministic_and_varied():
    images, labels = synthetic.make_scenes([4, 0], 6, 32)
    again, _ = synthetic.make_scenes([4, 0], 6, 32)
    np.testing.assert_array_equal(images, again)
    assert images.dtype == np.uint8 and labels.max() < len(synthetic.CLASS_NAMES)
    assert len(np.unique(labels)) >= 4
    # Boundary pixels blend both sides: no gap, the colours change smoothly across an edge.
    assert not np.array_equal(images, synthetic.make_scenes([5, 0], 6, 32)[0])


def test_a_rare_synthetic_class_keeps_only_its_share_of_objects():
    def share(rare):
        counts = synthetic.SyntheticSource(120, 1, 32, rare_class=3, rare_keep=rare).class_pixel_counts()
        return counts[:, 3].sum() / counts.sum()
    common, rare, none = share(1.0), share(0.2), share(0.0)
    assert none == 0 and 0.1 * common < rare < 0.35 * common


def numpy_grey(rgb):
    return (rgb * np.array([0.299, 0.587, 0.114])).sum(-1, keepdims=True)


def test_colour_operations_match_their_formulas():
    rgb = np.random.RandomState(7).uniform(0, 1, (5, 6, 3)).astype(np.float32)
    x = rgb.astype(np.float64)
    np.testing.assert_allclose(colour.adjust_brightness(rgb, 1.3).numpy(), np.clip(x * 1.3, 0, 1),
                               atol=1e-6)
    mean = numpy_grey(x).mean()
    np.testing.assert_allclose(colour.adjust_contrast(rgb, 0.7).numpy(),
                               np.clip((x - mean) * 0.7 + mean, 0, 1), atol=1e-6)
    np.testing.assert_allclose(colour.adjust_saturation(rgb, 1.4).numpy(),
                               np.clip((x - numpy_grey(x)) * 1.4 + numpy_grey(x), 0, 1), atol=1e-6)
    shifted = np.array([colorsys.hsv_to_rgb((h + 0.08) % 1.0, s, v) for h, s, v in
                        (colorsys.rgb_to_hsv(*p) for p in x.reshape(-1, 3))]).reshape(x.shape)
    np.testing.assert_allclose(colour.adjust_hue(rgb, 0.08).numpy(), shifted, atol=1e-5)


@pytest.mark.parametrize("sigma", [0.1, 0.7, 2.0])
def test_gaussian_blur_equals_opencv_and_stays_near_pil(sigma):
    rgb = np.random.RandomState(3).uniform(0, 1, (23, 31, 3)).astype(np.float32)
    ours = blur.gaussian_blur(tf.constant(rgb), sigma).numpy()
    # OpenCV's exact Gaussian with the same truncation (13 taps) and border (repeated pixels).
    opencv = cv2.GaussianBlur(rgb, (13, 13), sigmaX=sigma, sigmaY=sigma,
                              borderType=cv2.BORDER_REPLICATE)
    np.testing.assert_allclose(ours, opencv, atol=1e-5)
    # PIL's GaussianBlur (what FixMatch and UniMatch call) approximates it with box blurs on 8-bit
    # values: on a smooth image it stays within about one grey level on average, a small part of
    # what the blur itself changes.
    smooth = cv2.resize((rgb * 255).astype(np.uint8), (93, 69), interpolation=cv2.INTER_LINEAR)
    pil = np.asarray(Image.fromarray(smooth).filter(ImageFilter.GaussianBlur(radius=sigma))) / 255
    ours = blur.gaussian_blur(tf.constant(smooth / np.float32(255)), sigma).numpy()
    assert np.abs(ours - pil).mean() < 0.005
    if sigma >= 0.7:
        assert np.abs(ours - pil).mean() < 0.2 * np.abs(smooth / 255 - pil).mean()


def test_random_blur_blurs_about_half_the_images_with_sigma_in_range():
    rgb = tf.constant(np.random.RandomState(4).uniform(0, 1, (9, 9, 3)).astype(np.float32))
    blurred = 0
    for i in range(40):
        out = blur.random_blur(tf.constant([i, 1], tf.int64), rgb).numpy()
        if not np.array_equal(out, rgb.numpy()):
            blurred += 1
            # It is the blur of one sigma of the range: the best-fitting sigma there fits exactly.
            assert blur_fit_residual(out, rgb.numpy()) < 1e-5
    assert 10 <= blurred <= 30
    assert np.array_equal(blur.random_blur(tf.constant([0, 1], tf.int64), rgb, prob=0.0), rgb)


def test_colour_jitter_draws_torchvision_ranges_and_random_orders():
    params = colour.ColourParams()
    values, orders = zip(*[colour.jitter_factors(tf.constant([i, 3], tf.int64), params)
                           for i in range(300)])
    values = np.array([v.numpy() for v in values])
    assert np.all((values[:, :3] >= 0.6) & (values[:, :3] <= 1.4))
    assert np.all(np.abs(values[:, 3]) <= 0.1)
    assert values[:, 0].min() < 0.65 and values[:, 0].max() > 1.35
    orders = {tuple(o.numpy()) for o in orders}
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders) and len(orders) > 12


def test_student_view_is_colour_augmented_and_teacher_view_is_not(source):
    labelled, unlabelled = base.labelled_split(source.num_train, 5, 12345)
    geometric_params = geometric.GeometricParams(crop_size=(16, 16), scale_hung=True, hflip=True)
    plain = pipeline.InputPipeline(source, labelled, unlabelled, pipeline.PipelineParams(
        batch_size=4, seed=0, geometric=geometric_params), methods.base.build("cutmix"))
    coloured = pipeline.InputPipeline(source, labelled, unlabelled, pipeline.PipelineParams(
        batch_size=4, seed=0, geometric=geometric_params,
        student_colour=colour.ColourParams(prob=1.0, greyscale_prob=1.0)),
        methods.base.build("cutmix"))
    first_plain, = take(plain.train_dataset(), 1)
    first_coloured, = take(coloured.train_dataset(), 1)
    for plain_stream, coloured_stream in zip(first_plain["unlabelled"], first_coloured["unlabelled"]):
        # The teacher's view, the valid mask and the box mask are untouched by colour augmentation.
        np.testing.assert_array_equal(plain_stream["image"], coloured_stream["image"])
        np.testing.assert_array_equal(plain_stream["valid"], coloured_stream["valid"])
        assert "student_image" not in plain_stream
        student = pipeline.denormalise(coloured_stream["student_image"], source.rgb_mean,
                                       source.rgb_std).numpy()
        # Greyscale with probability 1: the three channels are equal.
        np.testing.assert_allclose(student[..., 0], student[..., 1], atol=1e-5)
        np.testing.assert_allclose(student[..., 0], student[..., 2], atol=1e-5)
    assert "student_image" not in first_coloured["labelled"]
    np.testing.assert_array_equal(first_plain["labelled"]["image"], first_coloured["labelled"]["image"])


def test_student_view_blur_is_a_gaussian_blur_of_the_teachers_view(source):
    params = pipeline.PipelineParams(batch_size=8, seed=0, student_blur_prob=0.5,
                                     geometric=geometric.GeometricParams(crop_size=(16, 16)))
    batch, = take(pipeline_with(source, params, "cutout").train_dataset(), 1)
    stream, = batch["unlabelled"]
    blurred = 0
    for teacher_view, student_view in zip(stream["image"], stream["student_image"]):
        if np.array_equal(teacher_view, student_view):
            continue
        blurred += 1
        assert blur_fit_residual(student_view, teacher_view) < 1e-4
    assert 1 <= blurred <= 7                       # about half of the 8
    assert "student_image" not in batch["labelled"]


def test_student_view_blur_takes_its_sigma_from_the_given_range(source):
    """A range of one value: every student view is the Gaussian blur of that sigma of the
    teacher's (on a kernel of 3 of its standard deviations a side)."""
    sigma = 0.35
    params = pipeline.PipelineParams(batch_size=4, seed=0, student_blur_prob=1.0,
                                     student_blur_sigma=(sigma, sigma),
                                     geometric=geometric.GeometricParams(crop_size=(16, 16)))
    batch, = take(pipeline_with(source, params, "cutout").train_dataset(), 1)
    stream, = batch["unlabelled"]
    for teacher_view, student_view in zip(stream["image"], stream["student_image"]):
        expected = blur.gaussian_blur(tf.constant(teacher_view), sigma, blur.kernel_radius(sigma))
        np.testing.assert_allclose(student_view, expected.numpy(), atol=1e-6)
        assert np.abs(student_view - teacher_view).max() > 0.01


def test_unimatch_gets_two_independent_strong_views_and_the_first_is_fixmatchs(source):
    """UniMatch's two strong views: each the colour jitter and blur of the same crop, drawn
    independently; the first is the view FixMatch (one view) gets from the same seed."""
    params = pipeline.PipelineParams(
        batch_size=8, seed=0, student_blur_prob=0.5,
        student_colour=colour.ColourParams(prob=1.0, greyscale_prob=0.0),
        geometric=geometric.GeometricParams(crop_size=(16, 16)))
    two, = take(pipeline_with(source, params, "unimatch").train_dataset(), 1)
    one, = take(pipeline_with(source, params, "fixmatch").train_dataset(), 1)
    for stream_two, stream_one in zip(two["unlabelled"], one["unlabelled"]):
        np.testing.assert_array_equal(stream_two["image"], stream_one["image"])
        np.testing.assert_array_equal(stream_two["student_image"], stream_one["student_image"])
        assert "student_image_2" not in stream_one
        first, second = stream_two["student_image"], stream_two["student_image_2"]
        for view in (first, second):
            assert np.abs(view - stream_two["image"]).max(axis=(1, 2, 3)).min() > 1e-3
        assert np.abs(first - second).max(axis=(1, 2, 3)).min() > 1e-3
    boxes = two["unlabelled"][0]
    assert boxes["mix_mask"].shape == boxes["mix_mask_2"].shape == (8, 16, 16, 1)
    assert not np.array_equal(boxes["mix_mask"], boxes["mix_mask_2"])
    assert boxes["feature_noise"].shape == (8, methods.pseudo_labels.FEATURE_NOISE_MAPS,
                                            methods.pseudo_labels.FEATURE_NOISE_CHANNELS)
    assert "mix_mask" not in two["unlabelled"][1]


def test_unlabelled_batches_grow_with_the_batch_ratio(source):
    params = pipeline.PipelineParams(batch_size=3, seed=0, unlabelled_batch_ratio=2,
                                     geometric=geometric.GeometricParams(crop_size=(16, 16)))
    batch, = take(pipeline_with(source, params).train_dataset(), 1)
    assert batch["labelled"]["image"].shape[0] == 3
    assert [s["image"].shape[0] for s in batch["unlabelled"]] == [6, 6]


def test_worker_shares_are_the_slices_of_the_global_batch(source):
    """Two workers with two replicas each: worker w's dataset gives, step after step, its replicas'
    quarters of the global batch (of 8 labelled, 16 unlabelled), in replica order, from any start
    step: together exactly the global batches, and no worker reads another's samples."""
    labelled, unlabelled = base.labelled_split(source.num_train, 5, 12345)
    params = pipeline.PipelineParams(batch_size=8, seed=0, unlabelled_batch_ratio=2,
                                     geometric=geometric.GeometricParams(crop_size=(8, 8)))
    streams = pipeline.InputPipeline(source, labelled, unlabelled, params,
                                     methods.base.build("cutmix"))
    whole = take(streams.train_dataset(1), 2)       # global batches of steps 1 and 2 (0-based)
    for worker in range(2):
        share = pipeline.WorkerShare(index=worker, workers=2, local_replicas=2)
        pieces = take(streams.train_dataset(1, share), 4)
        for step in range(2):
            for replica in range(2):
                piece, k = pieces[2 * step + replica], 2 * worker + replica
                np.testing.assert_array_equal(piece["labelled"]["image"],
                                              whole[step]["labelled"]["image"][2 * k:2 * k + 2])
                for key in ("image", "mix_mask"):
                    np.testing.assert_array_equal(piece["unlabelled"][0][key],
                                                  whole[step]["unlabelled"][0][key][4 * k:4 * k + 4])
