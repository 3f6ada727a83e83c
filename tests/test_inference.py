"""The inference path (semiseg_tf/inference.py) against numpy oracles: normalisation and central
padding, sliding windows, flip averaging, several scales, hole filling; and the scores and pictures of
evaluation."""
import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from semiseg_tf import inference, metrics, models, visualise
from semiseg_tf.data import base

MEAN, STD = base.IMAGENET_MEAN, base.IMAGENET_STD


def softmax(logits):
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def normalised(images):
    return ((images.astype(np.float64) / 255 - np.array(MEAN)) / np.array(STD)).astype(np.float32)


def random_images(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def conv_net(num_classes=3, symmetric=False, seed=0):
    """Two 3x3 convolutions, stride 1: a receptive field of 5x5 pixels. With `symmetric`, every
    kernel equals its horizontal mirror, so the network commutes with horizontal flips."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(num_classes, 3, padding="same")(x)
    network = keras.Model(inputs, outputs)
    if symmetric:
        for layer in network.layers[1:]:
            kernel, bias = layer.get_weights()
            layer.set_weights([(kernel + kernel[:, ::-1]) / 2, bias])
    return network


def test_single_pass_is_normalise_pad_centrally_run_crop_softmax():
    keras.utils.set_random_seed(1)
    network = models.build("tiny_unet", 6)          # needs multiples of 4
    images = random_images((2, 13, 18, 3))
    segmenter = inference.Segmenter(network, MEAN, STD, input_multiple=4)
    out = segmenter.predict(images)
    # Oracle: 13 -> 16 rows (1 before, 2 after), 18 -> 20 columns (1 and 1), padded with the mean.
    padded = np.pad(normalised(images), [(0, 0), (1, 2), (1, 1), (0, 0)])
    expected = softmax(network(padded, training=False).numpy()[:, 1:14, 1:19].astype(np.float64))
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(out["labels"].numpy(), expected.argmax(-1))
    assert out["labels"].dtype == tf.int32 and out["probabilities"].dtype == tf.float32


def test_a_four_band_16_bit_image_is_scaled_by_65535_and_normalised_per_band():
    keras.utils.set_random_seed(2)
    network = models.build("tiny_unet", 3, bands=4)
    images = np.random.default_rng(3).integers(0, 65536, (1, 12, 16, 4), dtype=np.uint16)
    mean, std = (0.1, 0.2, 0.3, 0.4), (0.5, 0.25, 0.2, 0.1)
    segmenter = inference.Segmenter(network, mean, std, input_multiple=4, dtype=tf.uint16)
    out = segmenter.predict(images)
    x = ((images.astype(np.float64) / 65535 - np.array(mean)) / np.array(std)).astype(np.float32)
    expected = softmax(network(x, training=False).numpy().astype(np.float64))
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-6)


def test_padding_is_central():
    """A network whose class-1 logit is the row index in its (padded) input: after cropping, the
    first row of the image sits `d // 2` rows into the padded input (the authors' SegCollate)."""
    def row_logits(x):
        rows = tf.cast(tf.range(tf.shape(x)[1]), tf.float32)[None, :, None, None]
        return tf.concat([tf.zeros_like(x[..., :1]), rows * tf.ones_like(x[..., :1])], axis=-1)
    inputs = keras.Input((None, None, 3))
    network = keras.Model(inputs, keras.layers.Lambda(row_logits)(inputs))
    segmenter = inference.Segmenter(network, MEAN, STD, input_multiple=8)
    images = random_images((1, 5, 8, 3))            # 5 rows -> 8: 1 before, 2 after
    probabilities = segmenter.probabilities(images).numpy()
    np.testing.assert_allclose(probabilities[0, :, 0, 1], softmax(
        np.stack([np.zeros(5), np.arange(1, 6)], -1))[:, 1], rtol=1e-6)


def test_tile_starts_cover_the_image_and_end_at_its_edge():
    assert inference.tile_starts(2048, 1024, 1 / 3) == [0, 683, 1024]
    assert inference.tile_starts(1024, 512, 1 / 3) == [0, 341, 512]
    assert inference.tile_starts(300, 512, 1 / 3) == [0]          # tile larger than the image
    assert inference.tile_starts(100, 40, 0.0) == [0, 40, 60]


def test_one_tile_the_size_of_the_image_is_exactly_the_single_pass():
    network = conv_net()
    images = random_images((2, 21, 30, 3))
    whole = inference.Segmenter(network, MEAN, STD).probabilities(images).numpy()
    tiled = inference.Segmenter(network, MEAN, STD, options=inference.InferenceOptions(
        tile_size=(21, 30))).probabilities(images).numpy()
    np.testing.assert_array_equal(tiled, whole)
    bigger = inference.Segmenter(network, MEAN, STD, options=inference.InferenceOptions(
        tile_size=(64, 64))).probabilities(images).numpy()
    np.testing.assert_array_equal(bigger, whole)


def tile_average(network, images, tile, overlap):
    """Oracle of sliding windows: each tile through the network alone (numpy softmax), each pixel
    the mean of the tiles that cover it."""
    count, height, width, _ = images.shape
    total, covered = 0, np.zeros((height, width, 1))
    for top in inference.tile_starts(height, tile[0], overlap):
        for left in inference.tile_starts(width, tile[1], overlap):
            rows, cols = slice(top, top + tile[0]), slice(left, left + tile[1])
            probabilities = softmax(network(normalised(images[:, rows, cols]),
                                            training=False).numpy().astype(np.float64))
            if isinstance(total, int):
                total = np.zeros((count, height, width, probabilities.shape[-1]))
            total[:, rows, cols] += probabilities
            covered[rows, cols] += 1
    return total / covered


@pytest.mark.parametrize("size,tile,overlap", [((50, 37), (16, 12), 1 / 3),   # 4 rows x 4 cols
                                               ((23, 40), (23, 9), 0.0),      # one row, no overlap
                                               ((31, 20), (7, 20), 0.5)])     # one column
def test_tiles_are_the_mean_of_each_tile_run_alone_a_row_of_tiles_at_a_time(size, tile, overlap):
    """The strips of rows (only a row of tiles is summed at once) give each pixel the mean of the
    tiles covering it, on a batch of two; the label maps are the probabilities' argmax and max."""
    network = conv_net(num_classes=4)
    images = random_images((2, *size, 3), seed=5)
    segmenter = inference.Segmenter(network, MEAN, STD, options=inference.InferenceOptions(
        tile_size=tile, tile_overlap=overlap))
    probabilities = segmenter.probabilities(images).numpy()
    np.testing.assert_allclose(probabilities, tile_average(network, images, tile, overlap),
                               atol=1e-6)
    maps = segmenter.label_maps(tf.constant(images))
    np.testing.assert_array_equal(maps["labels"].numpy(), probabilities.argmax(-1))
    np.testing.assert_allclose(maps["max_probability"].numpy(), probabilities.max(-1), atol=1e-7)


def test_an_image_over_the_pass_limit_goes_in_tiles_and_one_within_it_in_one_pass():
    """With no tile size, --max_pass_pixels decides: an image of more pixels goes in square tiles
    (of the largest side within the limit, here 10), whether its size is known when the graph is
    made or only when the image arrives; one within the limit is the single pass."""
    network = conv_net()
    options = inference.InferenceOptions(max_pass_pixels=100)
    assert inference.auto_tile(100) == (10, 10)
    assert inference.auto_tile(inference.DEFAULT_MAX_PASS_PIXELS) == (512, 512)
    large, small = random_images((1, 26, 33, 3), seed=6), random_images((1, 10, 10, 3), seed=7)
    expected = tile_average(network, large, (10, 10), 1 / 3)
    segmenter = inference.Segmenter(network, MEAN, STD, options=options)
    np.testing.assert_allclose(segmenter.probabilities(large).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(segmenter.predict(large)["probabilities"].numpy(), expected,
                               atol=1e-6)
    never = inference.Segmenter(network, MEAN, STD, options=inference.InferenceOptions(
        max_pass_pixels=None))
    np.testing.assert_array_equal(segmenter.predict(small)["probabilities"].numpy(),
                                  never.predict(small)["probabilities"].numpy())
    np.testing.assert_array_equal(segmenter.probabilities(small).numpy(),
                                  never.probabilities(small).numpy())
    # The exported graph decides when the image arrives.
    served = tf.function(segmenter.__call__, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8)])
    np.testing.assert_allclose(served(large)["probabilities"].numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(served(small)["probabilities"].numpy(),
                               never.probabilities(small).numpy(), atol=1e-6)


def test_overlapping_tiles_agree_with_the_whole_image_away_from_tile_seams():
    """A fully convolutional network with a 5x5 receptive field: a tile's prediction equals the whole
    image's wherever the pixel's 5x5 neighbourhood lies inside the tile (or is cut by the image's own
    edge). So the tile average equals the whole-image pass at every pixel where that holds for every
    tile covering it, and is close elsewhere."""
    network = conv_net()
    height, width, tile, overlap = 40, 56, (24, 32), 1 / 3
    images = random_images((1, height, width, 3), seed=3)
    whole = inference.Segmenter(network, MEAN, STD).probabilities(images).numpy()[0]
    options = inference.InferenceOptions(tile_size=tile, tile_overlap=overlap)
    tiled = inference.Segmenter(network, MEAN, STD, options=options).probabilities(images).numpy()[0]

    exact = np.ones((height, width), bool)
    for top in inference.tile_starts(height, tile[0], overlap):
        for left in inference.tile_starts(width, tile[1], overlap):
            inside = np.zeros((height, width), bool)
            # Rows/columns within 2 px of a tile edge that is not the image's edge are affected.
            r0 = top + (2 if top > 0 else 0)
            r1 = top + tile[0] - (2 if top + tile[0] < height else 0)
            c0 = left + (2 if left > 0 else 0)
            c1 = left + tile[1] - (2 if left + tile[1] < width else 0)
            inside[r0:r1, c0:c1] = True
            covered = np.zeros((height, width), bool)
            covered[top:top + tile[0], left:left + tile[1]] = True
            exact &= inside | ~covered
    assert 0.5 < exact.mean() < 1.0
    np.testing.assert_allclose(tiled[exact], whole[exact], atol=1e-6)
    assert np.abs(tiled - whole).mean() < 0.02
    assert (tiled.argmax(-1) == whole.argmax(-1)).mean() > 0.95


def test_tiles_on_an_image_larger_than_the_tile_with_a_padded_network():
    """tiny_unet needs multiples of 4: the tiles (24x30) are padded to them inside. Close to the whole
    image, not equal (pooling makes the receptive field large)."""
    keras.utils.set_random_seed(0)
    network = models.build("tiny_unet", 4)
    images = random_images((2, 37, 61, 3))
    whole = inference.Segmenter(network, MEAN, STD, input_multiple=4).probabilities(images).numpy()
    tiled = inference.Segmenter(network, MEAN, STD, input_multiple=4, options=inference
                                .InferenceOptions(tile_size=(24, 30))).probabilities(images).numpy()
    assert tiled.shape == whole.shape
    np.testing.assert_allclose(tiled.sum(-1), 1.0, atol=1e-5)
    assert np.abs(tiled - whole).mean() < 0.05


def test_flip_averaging_of_a_mirror_symmetric_network_equals_the_plain_pass():
    network = conv_net(symmetric=True)
    images = random_images((2, 17, 23, 3))
    plain = inference.Segmenter(network, MEAN, STD).probabilities(images).numpy()
    flipped = inference.Segmenter(network, MEAN, STD, options=inference.InferenceOptions(
        flip=True)).probabilities(images).numpy()
    np.testing.assert_allclose(flipped, plain, atol=1e-6)
    # And it is not trivially so: an asymmetric network changes under flip averaging.
    other = conv_net(seed=1)
    assert not np.allclose(
        inference.Segmenter(other, MEAN, STD).probabilities(images).numpy(),
        inference.Segmenter(other, MEAN, STD, options=inference.InferenceOptions(flip=True))
        .probabilities(images).numpy(), atol=1e-3)


def test_flip_averages_the_mirrored_pass_mirrored_back():
    network = conv_net(seed=2)
    images = random_images((1, 12, 15, 3))
    x = normalised(images)
    direct = softmax(network(x, training=False).numpy().astype(np.float64))
    mirrored = softmax(network(x[:, :, ::-1].copy(), training=False).numpy()[:, :, ::-1]
                       .astype(np.float64))
    out = inference.Segmenter(network, MEAN, STD, options=inference.InferenceOptions(
        flip=True)).probabilities(images).numpy()
    np.testing.assert_allclose(out, (direct + mirrored) / 2, atol=1e-6)


def test_two_scales_average_the_softmax_of_each_resized_back():
    """Oracle: OpenCV's bilinear resize (which tf.image.resize matches, ENVIRONMENT.md) of the
    normalised image to half size, the network, softmax, resized back; averaged with the full-size
    pass."""
    network = conv_net(seed=4)
    images = random_images((1, 20, 28, 3), seed=5)
    x = normalised(images)[0]
    half = cv2.resize(x, (14, 10), interpolation=cv2.INTER_LINEAR)
    half_probs = softmax(network(half[None], training=False).numpy()[0].astype(np.float64))
    back = cv2.resize(half_probs.astype(np.float32), (28, 20), interpolation=cv2.INTER_LINEAR)
    full = softmax(network(x[None], training=False).numpy()[0].astype(np.float64))
    expected = (back + full) / 2
    out = inference.Segmenter(network, MEAN, STD, options=inference.InferenceOptions(
        scales=(0.5, 1.0))).probabilities(images).numpy()[0]
    np.testing.assert_allclose(out, expected, atol=2e-3)
    assert np.abs(out - full).max() > 1e-2      # the half-scale pass does change the result


def test_scales_round_to_the_nearest_size_and_keep_the_image_size():
    network = conv_net()
    images = random_images((1, 15, 21, 3))
    out = inference.Segmenter(network, MEAN, STD, options=inference.InferenceOptions(
        scales=inference.USUAL_SCALES, flip=True)).predict(images)
    assert out["probabilities"].shape == (1, 15, 21, 3)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, atol=1e-5)


def test_fill_holes_equals_scipy_binary_fill_holes():
    rng = np.random.default_rng(0)
    labels = (ndimage.gaussian_filter(rng.normal(size=(3, 40, 50)), (0, 2, 2)) > 0.05).astype(np.int32)
    labels[0, 10:20, 10:20] = 1
    labels[0, 13:17, 13:17] = 0                    # a hole for sure
    filled = inference.fill_holes(tf.constant(labels)).numpy()
    for got, original in zip(filled, labels):
        np.testing.assert_array_equal(got, ndimage.binary_fill_holes(original != 0).astype(np.int32))
    assert filled[0, 15, 15] == 1


def test_segmenter_fills_holes_when_asked():
    ring = np.zeros((9, 9), np.int32)
    ring[2:7, 2:7] = 1
    ring[3:6, 3:6] = 0

    def network(images, training=False):
        return tf.one_hot(tf.constant(ring[None]), 2) * tf.ones_like(images[..., :1])
    images = random_images((1, 9, 9, 3))
    plain = inference.Segmenter(network, MEAN, STD).predict(images)["labels"].numpy()[0]
    filled = inference.Segmenter(network, MEAN, STD, fill_holes=True).predict(images)
    np.testing.assert_array_equal(plain, ring)
    assert filled["labels"].numpy()[0, 2:7, 2:7].min() == 1 and filled["labels"].numpy().sum() == 25


def test_scores_hand_worked():
    # The 3-class example of test_metrics: rows truth, columns prediction.
    confusion = np.array([[2, 1, 0], [1, 2, 0], [0, 1, 1]])
    scores = metrics.scores(confusion, ("a", "b", "c"))
    assert scores["pixel_accuracy"] == pytest.approx(5 / 8)
    assert scores["per_class_accuracy"] == pytest.approx({"a": 2 / 3, "b": 2 / 3, "c": 1 / 2})
    assert scores["mean_class_accuracy"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3)
    assert scores["miou"] == pytest.approx((0.5 + 0.4 + 0.5) / 3)
    assert scores["confusion"] == confusion.tolist()
    # A class absent from the truth is left out of the mean class accuracy.
    assert metrics.scores([[3, 1], [0, 0]], ("x", "y"))["mean_class_accuracy"] == 0.75


def test_confusion_picture_is_row_normalised():
    confusion = np.array([[2, 1, 0], [1, 2, 0], [0, 1, 1]])
    names = ("background", "b", "class c")
    picture, layout = visualise.confusion_picture(confusion, names, cell=30)
    rows = confusion / confusion.sum(1, keepdims=True)
    for i in range(3):
        for j in range(3):
            x, y = layout.cell_centre(i, j)
            corner = picture[y - 12, x - 12]     # away from the percentage written at the centre
            np.testing.assert_array_equal(corner, visualise.confusion_colour(rows[i, j]))
    assert visualise.confusion_colour(0) == (255, 255, 255)
    # Names are drawn: dark pixels left of the first row and above the first column.
    x, y = layout.cell_centre(0, 0)
    assert (picture[y - 8:y + 8, :layout.left - 2] < 128).any()
    assert (picture[:layout.top - 2, x - 8:x + 8] < 128).any()


def test_an_overlay_blended_a_strip_of_rows_at_a_time_is_the_whole_blend():
    image = random_images((600, 7, 3), seed=8)
    labels = np.random.default_rng(9).integers(0, 6, (600, 7))
    colours = visualise.colourise(labels).astype(np.float64)
    expected = np.floor(0.7 * image + 0.3 * colours + 0.5)
    blended = visualise.overlay(image, labels, alpha=0.3)
    assert blended.dtype == np.uint8
    # float32 arithmetic against float64: a value at .5 may round either way.
    assert np.abs(blended.astype(int) - expected).max() <= 1
    np.testing.assert_array_equal(blended, visualise.overlay(image, labels, alpha=0.3, rows=600))


def test_label_png_reads_back_as_ids_in_the_palette():
    from io import BytesIO

    from PIL import Image
    labels = np.array([[0, 1, 2], [2, 255, 1]])
    palette = ((10, 20, 30), (40, 50, 60), (70, 80, 90))
    image = Image.open(BytesIO(visualise.label_png(labels, palette)))
    assert image.mode == "P"
    np.testing.assert_array_equal(np.asarray(image), labels)
    np.testing.assert_array_equal(np.asarray(image.convert("RGB"))[0, 1], (40, 50, 60))


def test_in_passes_calls_with_as_many_images_as_one_pass_takes_and_joins_their_outputs():
    images = np.arange(7 * 10 * 10, dtype=np.float32).reshape(7, 10, 10, 1)
    calls = []

    def call(chunk):
        calls.append(len(chunk))
        return {"sum": tf.reduce_sum(chunk, axis=[1, 2, 3])}

    # One pass of 450 pixels at scale 1.5 takes 200 pixels at scale 1: two 10x10 images.
    options = inference.InferenceOptions(scales=(1.0, 1.5), max_pass_pixels=450)
    assert options.one_pass_pixels() == 200
    joined = inference.in_passes(call, images, options)
    assert calls == [2, 2, 2, 1]
    np.testing.assert_array_equal(joined["sum"], images.sum(axis=(1, 2, 3)))
    calls.clear()
    inference.in_passes(call, images, inference.InferenceOptions(tile_size=(4, 4)))
    assert calls == [7]                              # tiles bound every image: one call
    empty = inference.in_passes(call, images[:0], options)        # one call, empty outputs
    assert empty["sum"].shape == (0,) and calls[-1] == 0
    with pytest.raises(ValueError, match="10x10 pixels: over the 99 of one pass"):
        inference.in_passes(call, images, inference.InferenceOptions(max_pass_pixels=99))
