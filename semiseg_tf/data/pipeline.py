"""tf.data input streams: one labelled stream and the unlabelled streams a perturbation asks for.

Every sample is a pure function of (seed, stream, position in the stream): the position picks the image
through a fresh random permutation per pass over the data (the authors' `RepeatSampler`), and seeds its
augmentation and its box mask. So two runs with the same seed see the same batches, a resumed run
continues the exact sequence from its step, and parallel map workers can never share random state.
"""
import dataclasses

import tensorflow as tf

from semiseg_tf.augment import blur, colour, geometric

# Fixed stream identities, folded into the run seed.
LABELLED_STREAM = 0
UNLABELLED_STREAM_BASE = 1


@dataclasses.dataclass(frozen=True)
class PipelineParams:
    batch_size: int
    geometric: geometric.GeometricParams
    seed: int
    # Colour augmentation of the student's copy of each unlabelled sample (`student_image`); the
    # teacher's `image` is left alone. None: the student sees the teacher's image.
    student_colour: colour.ColourParams = None
    # Unlabelled batches hold this many times `batch_size` samples (--unsup_batch_ratio).
    unlabelled_batch_ratio: int = 1
    # Probability of a Gaussian blur of the student's copy (after its colour augmentation), with a
    # standard deviation from U(student_blur_sigma) pixels (FixMatch's and UniMatch's strong view:
    # 0.5, U(0.1, 2.0)); 0: none.
    student_blur_prob: float = 0.0
    student_blur_sigma: tuple = blur.SIGMA_RANGE


def _fold(seed, value):
    return tf.random.experimental.stateless_fold_in(seed, tf.cast(value, tf.int64))


def student_view_key(view):
    """The sample key of the student's `view`-th (0-based) strong view."""
    return "student_image" if view == 0 else f"student_image_{view + 1}"


def stream_index(indices, position, stream_seed):
    """The dataset index at `position` of an endless sequence of random permutations of `indices`."""
    count = tf.shape(indices, out_type=tf.int64)[0]
    order = tf.argsort(tf.random.stateless_uniform([count], _fold(stream_seed, position // count)))
    return tf.gather(indices, tf.gather(order, position % count))


# The largest value of each integer pixel type: images of it are divided by this to [0, 1].
PIXEL_MAXIMUM = {tf.uint8: 255.0, tf.uint16: 65535.0}


def normalise(image, mean, std):
    """An image (uint8, uint16, or float in [0, 1]; any number of bands) to float32 standardised per
    band; 0 is then the mean colour (used as padding)."""
    image = tf.convert_to_tensor(image)      # a numpy dtype would not find its entry below
    if image.dtype in PIXEL_MAXIMUM:
        image = tf.cast(image, tf.float32) / PIXEL_MAXIMUM[image.dtype]
    else:
        image = tf.cast(image, tf.float32)   # a no-op for float32
    return (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def denormalise(image, mean, std):
    """Inverse of `normalise`, to float RGB in [0, 1] (padding becomes the mean colour)."""
    return tf.clip_by_value(image * tf.constant(std, tf.float32) + tf.constant(mean, tf.float32),
                            0.0, 1.0)


def warp_sample(image, label, matrix, params):
    """Warps a normalised image (and its label, if any) by one source-to-crop matrix.

    Returns:
      dict with `image` [h, w, 3] float32, `label` [h, w] int32 (255 outside the source; only if
      `label` is not None), `valid` [h, w, 1] float32 (1 where the pixel comes from inside the source).
    """
    crop = params.crop_size
    sample = {
        "image": geometric.warp(image, matrix, crop, "BILINEAR", 0.0, params.image_border),
        "valid": geometric.warp(tf.ones_like(image[..., :1]), matrix, crop, "BILINEAR", 0.0),
    }
    if label is not None:
        sample["label"] = geometric.warp(tf.cast(label, tf.int32)[..., None], matrix, crop, "NEAREST",
                                         255.0)[..., 0]
    return sample


def augment(image, label, seed, params):
    """Applies one random geometric augmentation to a normalised image and its label (see
    `warp_sample`)."""
    shape = tf.shape(image)
    return warp_sample(image, label, geometric.random_geometric_matrix(seed, shape[0], shape[1], params),
                       params)


def augment_pair(image, seed, params):
    """Two views of one unlabelled image for standard-augmentation consistency.

    Returns:
      dict with the teacher's view (`image`, `valid`), the student's (`student_image`,
      `student_valid`), and `teacher_to_student` [3, 3]: the matrix from the teacher's crop pixels to
      the student's, `M_student . inverse(M_teacher)`.
    """
    shape = tf.shape(image)
    teacher_matrix, student_matrix = geometric.random_geometric_pair(seed, shape[0], shape[1], params)
    teacher = warp_sample(image, None, teacher_matrix, params)
    student = warp_sample(image, None, student_matrix, params)
    between = tf.matmul(tf.cast(student_matrix, tf.float64),
                        tf.linalg.inv(tf.cast(teacher_matrix, tf.float64)))
    return {"image": teacher["image"], "valid": teacher["valid"],
            "student_image": student["image"], "student_valid": student["valid"],
            "teacher_to_student": tf.cast(between, tf.float32)}


class InputPipeline:
    """Builds the training streams of one run.

    Args:
      source: a `DataSource`.
      labelled_indices, unlabelled_indices: int64 arrays of training indices.
      params: a `PipelineParams`.
      perturbation: decides how many unlabelled streams there are and what each sample carries
        besides its image (e.g. a CutMix box mask); `None` for no unlabelled data at all.
    """

    def __init__(self, source, labelled_indices, unlabelled_indices, params, perturbation=None):
        self.source = source
        self.labelled_indices = tf.constant(labelled_indices, tf.int64)
        self.unlabelled_indices = tf.constant(unlabelled_indices, tf.int64)
        self.params = params
        self.perturbation = perturbation
        self.mean, self.std = source.rgb_mean, source.rgb_std
        # Stateless ops take a 2-word seed; the constant word keeps these streams apart from any
        # other use of the same run seed (e.g. weight initialisation).
        self._seed = tf.constant([params.seed, 0x5E6], tf.int64)

    def _inputs(self, stream_id, with_label, first_position, share):
        """(dataset, fetch): `fetch(*element)` gives (position, image, label) of each element of
        `dataset`, from `first_position` of the stream on. Here: the position picks an image of
        the source, through a fresh random permutation of the stream's indices per pass."""
        indices = self.labelled_indices if with_label else self.unlabelled_indices
        order_seed = _fold(_fold(self._seed, stream_id), 0)
        positions = tf.data.Dataset.range(first_position, tf.int64.max)
        if share is not None:
            positions = share.positions(first_position // self._batch(with_label),
                                        self._batch(with_label))

        def fetch(position):
            return (position, *self.source.read_train(stream_index(indices, position, order_seed)))
        return positions, fetch

    def _batch(self, with_label):
        return self.params.batch_size * (1 if with_label else self.params.unlabelled_batch_ratio)

    def _stream(self, stream_id, start_step, with_label, extras_fn, share=None):
        stream_seed = _fold(self._seed, stream_id)
        sample_seed_base = _fold(stream_seed, 1)
        colour_seed_base = _fold(stream_seed, 2)
        blur_seed_base = _fold(stream_seed, 3)
        batch = self._batch(with_label)
        mean, std = self.mean, self.std
        student_colour = None if with_label else self.params.student_colour
        student_blur_prob = 0.0 if with_label else self.params.student_blur_prob
        paired = not with_label and self.perturbation is not None and self.perturbation.paired_views
        # Independently colour-jittered and blurred copies for the student (UniMatch's two strong
        # views): `student_image`, `student_image_2`, ...
        strong_views = 0 if with_label else self.perturbation.strong_views

        def make_sample(position, image, label):
            seeds = tf.random.experimental.stateless_split(_fold(sample_seed_base, position), 2)
            image = normalise(image, mean, std)
            if paired:
                sample = augment_pair(image, seeds[0], self.params.geometric)
            else:
                sample = augment(image, label if with_label else None, seeds[0],
                                 self.params.geometric)
            base = sample.get("student_image", sample["image"])
            for view in range(strong_views):
                # View 0 keeps the seeds it had before there were more views (runs repeat).
                key = student_view_key(view)
                colour_seed = _fold(colour_seed_base, position)
                blur_seed = _fold(blur_seed_base, position)
                if view:
                    colour_seed, blur_seed = _fold(colour_seed, view), _fold(blur_seed, view)
                image = base
                if student_colour is not None:
                    rgb = colour.random_colour(colour_seed, denormalise(image, mean, std),
                                               student_colour)
                    image = normalise(rgb, mean, std)
                if student_blur_prob > 0:
                    # The normalisation is affine per channel and the kernel sums to 1, so
                    # blurring the normalised image is blurring the colours.
                    image = blur.random_blur(blur_seed, image, student_blur_prob,
                                             self.params.student_blur_sigma)
                if image is not base or view:
                    sample[key] = image
            if extras_fn is not None:
                sample.update(extras_fn(seeds[1], self.params.geometric.crop_size))
            return sample

        inputs, fetch = self._inputs(stream_id, with_label, start_step * batch, share)
        if share is not None:
            # This worker's contiguous share of each step's `batch` positions, in batches of one
            # replica's (consecutive batches go to its replicas in order, so across the workers
            # every replica gets the slice that MirroredStrategy would give it on one machine).
            batch = share.per_replica(batch)
        return (inputs.map(lambda *element: make_sample(*fetch(*element)),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .batch(batch, drop_remainder=True))

    def train_dataset(self, start_step=0, share=None):
        """Endless batches from `start_step` on: {'labelled': {...}, 'unlabelled': (stream, ...)}.

        `share`: a `WorkerShare`, for one worker of several: it reads only its own samples of each
        step, in per-replica batches. None: the whole global batch of every step.
        """
        streams = {"labelled": self._stream(LABELLED_STREAM, start_step, True, None, share)}
        if self.perturbation is not None and self.perturbation.num_unlabelled_streams > 0:
            streams["unlabelled"] = tuple(
                self._stream(UNLABELLED_STREAM_BASE + k, start_step, False,
                             self.perturbation.sample_extras if k == 0 else None, share)
                for k in range(self.perturbation.num_unlabelled_streams))
        options = tf.data.Options()
        options.deterministic = True
        return tf.data.Dataset.zip(streams).prefetch(tf.data.AUTOTUNE).with_options(options)


@dataclasses.dataclass(frozen=True)
class WorkerShare:
    """One input pipeline's part of every global batch, from `tf.distribute.InputContext`: worker
    `index` of `workers`, feeding `local_replicas` replicas."""
    index: int
    workers: int
    local_replicas: int

    @classmethod
    def of(cls, input_context):
        workers = input_context.num_input_pipelines
        return cls(input_context.input_pipeline_id, workers,
                   input_context.num_replicas_in_sync // workers)

    def per_replica(self, batch):
        return batch // (self.workers * self.local_replicas)

    def positions(self, start_step, batch):
        """Stream positions of this worker's samples, step after step: for step s, positions
        s * batch + index * (batch / workers) onwards, batch / workers of them."""
        per_worker = batch // self.workers
        count = tf.data.Dataset.range(start_step * per_worker, tf.int64.max)
        return count.map(lambda k: (k // per_worker) * batch + self.index * per_worker
                         + k % per_worker)


def validation_dataset(source, batch_size, dataset=None):
    """Full validation images as they are, for the inference path (which normalises and pads):
    {'image': [N, H, W, bands] of the source's pixel type, 'label': int32 [N, H, W]} batches (batch
    1 if sizes differ).

    `dataset`: (image, label) pairs to use instead of `source.validation()` (e.g. its test set).
    """
    dtype = tf.as_dtype(source.pixels.dtype)

    def prepare(image, label):
        return {"image": tf.cast(image, dtype), "label": tf.cast(label, tf.int32)}
    dataset = source.validation() if dataset is None else dataset
    return (dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size if source.fixed_image_size else 1).prefetch(tf.data.AUTOTUNE))
