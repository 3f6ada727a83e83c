"""The trainer's batches from a user's own `tf.data` datasets, for `MeanTeacher.fit`.

The samples are made by the command-line trainer's own code (`pipeline.InputPipeline`): the same
normalisation, geometric augmentation, colour and blur of the student's views, and the masks and
other extras each perturbation draws, each seeded by its position in its stream. What differs is
where the images come from: the trainer draws them from a random permutation of a dataset it can
index; here they come in the order of the user's datasets, repeated, each unlabelled stream
through a shuffle buffer of its own (so that CutMix's two streams pair different images).
"""
import tensorflow as tf

from semiseg_tf.augment import blur, colour, geometric
from semiseg_tf.data import pipeline

DEFAULT_SHUFFLE_BUFFER = 256


class _DatasetPipeline(pipeline.InputPipeline):
    """`InputPipeline` whose streams read datasets of (image, label) or images in their order."""

    def __init__(self, labelled, unlabelled, params, perturbation, rgb_mean, rgb_std,
                 shuffle_buffer):
        self.datasets = {True: labelled, False: unlabelled}
        self.params, self.perturbation = params, perturbation
        self.mean, self.std = tuple(rgb_mean), tuple(rgb_std)
        self.shuffle_buffer = shuffle_buffer
        self._seed = tf.constant([params.seed, 0x5E6], tf.int64)

    def _inputs(self, stream_id, with_label, first_position, share):
        if share is not None:
            raise ValueError("a user's datasets are split among workers by tf.distribute "
                             "(experimental_distribute_dataset), not by a WorkerShare")
        dataset = self.datasets[with_label].repeat()
        if self.shuffle_buffer:
            # A seed of each stream's own, so the stream repeats exactly from any position.
            dataset = dataset.shuffle(self.shuffle_buffer, seed=self.params.seed * 7919 + stream_id,
                                      reshuffle_each_iteration=True)
        positions = tf.data.Dataset.range(first_position, tf.int64.max)
        elements = tf.data.Dataset.zip(positions, dataset.skip(first_position))

        def fetch(position, element):
            image, label = _image_and_label(element, with_label)
            return position, image, label
        return elements, fetch


def _image_and_label(element, with_label):
    """(image [H, W, 3], label [H, W] int32 or None) of one element: (image, mask) or an image."""
    if isinstance(element, dict):
        image, label = element["image"], element.get("label")
    elif isinstance(element, (tuple, list)):
        image, label = element[0], (element[1] if len(element) > 1 else None)
    else:
        image, label = element, None
    image = tf.convert_to_tensor(image)
    if image.dtype not in (tf.uint8, tf.float32):
        image = tf.cast(image, tf.float32)
    if not with_label:
        return image, None
    if label is None:
        raise ValueError("the labelled dataset must give (image, mask) pairs")
    label = tf.cast(label, tf.int32)
    if label.shape.rank == 3:
        label = label[..., 0]
    return image, label


def training_batches(labelled, unlabelled, model, crop_size, batch_size, seed=0,
                     augmentation=None, student_colour=None, student_blur_prob=0.0,
                     student_blur_sigma=blur.SIGMA_RANGE,
                     shuffle_buffer=DEFAULT_SHUFFLE_BUFFER, start_step=0):
    """Endless training batches for `model.fit` (with `steps_per_epoch`) from your own datasets.

    Args:
      labelled: a `tf.data.Dataset` of (image, mask) pairs, unbatched: images [H, W, 3] uint8, or
        float RGB in [0, 1]; masks [H, W] (or [H, W, 1]) of class ids, 255 where unlabelled.
        Sizes may differ from image to image.
      unlabelled: a dataset of images (or of pairs, whose masks are not read); None when the
        model trains without consistency (the supervised baseline).
      model: the `MeanTeacher`: its perturbation decides the unlabelled streams and what each
        sample carries (a CutMix box mask, ...), its `rgb_mean`/`rgb_std` the normalisation, its
        `unsup_batch_ratio` the unlabelled batch size.
      crop_size: (height, width) of the training crops.
      batch_size: labelled samples per step.
      seed: seeds every augmentation, mask and shuffle.
      augmentation: a `GeometricParams` (scale, rotation, flips); None: random crops only.
      student_colour: a `ColourParams` for the student's views of unlabelled images, or None.
      student_blur_prob: probability of a Gaussian blur of the student's views.
      student_blur_sigma: (low, high): its standard deviation is drawn from U(low, high) pixels
        (the published 0.1 to 2.0 were set for crops of 321 to 801 pixels; scale them to yours).
      shuffle_buffer: images each stream shuffles through (0: the datasets' own order).
      start_step: the step the batches start at (to continue a run where it stopped).
    Returns:
      a `tf.data.Dataset` of {'labelled': {...}, 'unlabelled': (stream, ...)} batches.
    """
    perturbation = model.perturbation if model.uses_unlabelled else None
    if perturbation is not None and perturbation.num_unlabelled_streams and unlabelled is None:
        raise ValueError(f"{type(perturbation).__name__} needs unlabelled images: pass a dataset "
                         "of them")
    crop_size = tuple(int(v) for v in crop_size)
    if augmentation is None:
        augmentation = geometric.GeometricParams(crop_size=crop_size)
    elif tuple(augmentation.crop_size) != crop_size:
        raise ValueError(f"augmentation.crop_size {augmentation.crop_size} differs from "
                         f"crop_size {crop_size}")
    if student_colour is not None and not isinstance(student_colour, colour.ColourParams):
        raise ValueError("student_colour must be a ColourParams or None")
    low, high = (float(v) for v in student_blur_sigma)
    if not 0 < low <= high:
        raise ValueError(f"student_blur_sigma {student_blur_sigma}: expected (low, high) with "
                         "0 < low <= high")
    params = pipeline.PipelineParams(
        batch_size=int(batch_size), geometric=augmentation, seed=int(seed),
        student_colour=student_colour, unlabelled_batch_ratio=model.unsup_batch_ratio,
        student_blur_prob=float(student_blur_prob),
        student_blur_sigma=(low, high))
    streams = _DatasetPipeline(labelled, unlabelled, params, perturbation, model.rgb_mean,
                               model.rgb_std, int(shuffle_buffer))
    return streams.train_dataset(int(start_step))


def evaluation_batches(dataset, batch_size=1):
    """(image, mask) pairs as `MeanTeacher.evaluate` takes them: images as they are (uint8, or
    float in [0, 1]; the model normalises and pads them), masks int32 [H, W]; batches of
    `batch_size` (images of one batch must share their size)."""
    def pair(*element):
        image, label = _image_and_label(element if len(element) > 1 else element[0], True)
        return image, label
    return dataset.map(pair, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(
        tf.data.AUTOTUNE)
