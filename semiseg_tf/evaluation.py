"""Scoring a model on a labelled set, through the inference path (dataset-level confusion).

`Evaluator` is what the trainer validates with; `score` is what it and `python -m semiseg_tf.evaluate`
both run, so the trainer's mIoU and the command's are the same computation.
"""
import numpy as np

from semiseg_tf import inference
from semiseg_tf import metrics as metrics_lib
from semiseg_tf.data import pipeline
from semiseg_tf.progress import Progress


def score(predict_labels, batches, class_names, progress=None, absent="zero"):
    """Scores the class maps of `predict_labels` against the labels of `batches`.

    Args:
      predict_labels: uint8 images [N, H, W, 3] -> int labels [N, H, W].
      batches: iterable of {'image': uint8 [N, H, W, 3], 'label': int [N, H, W]} (255: ignore).
      progress: a `Progress` counting images, or None.
      absent: how a class absent from truth and prediction counts in the means (metrics.scores).
    Returns:
      `metrics.scores` of the whole set's confusion matrix.
    """
    num_classes = len(class_names)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    done = 0
    for batch in batches:
        predictions = predict_labels(batch["image"])
        confusion += metrics_lib.confusion_matrix(batch["label"], predictions, num_classes).numpy()
        done += int(batch["label"].shape[0])
        if progress is not None:
            progress.update(done)
    return metrics_lib.scores(confusion, class_names, absent)


def count_images(dataset):
    """Elements of an unbatched tf.data.Dataset, if tf.data knows it without reading (else None)."""
    count = int(dataset.cardinality())
    return count if count >= 0 else None


class Evaluator:
    """Full-image evaluation of networks on a data source's validation set, or on `dataset`.

    Args:
      source: the `DataSource` (classes, normalisation, whether images share one size).
      batch_size: images per batch when they share one size.
      multiple: the network's input multiple (images are padded to it inside the inference path).
      fill_holes: two-class datasets: holes in each predicted foreground region are filled before
        scoring (the authors' --bin_fill_holes; `inference.fill_holes`).
      dataset: (image, label) pairs instead of `source.validation()` (e.g. its test set).
      options: `inference.InferenceOptions` (flip, scales, tiles).
      out: a stream for progress lines, or None for none.
      jit_compile: the network's passes compiled with XLA (`inference.Segmenter`).
    """

    def __init__(self, source, batch_size, multiple=1, fill_holes=False, dataset=None,
                 options=inference.InferenceOptions(), out=None, jit_compile=False):
        self.source = source
        self.multiple = multiple
        self.fill_holes = fill_holes
        self.options = options
        self.out = out
        self.jit_compile = jit_compile
        self._pairs = source.validation() if dataset is None else dataset
        self.dataset = pipeline.validation_dataset(source, batch_size, self._pairs)
        self._segmenters = {}   # id(network) -> (network, Segmenter): one trace per network

    def segmenter(self, network):
        """The network's `inference.Segmenter` with this evaluation's options (made once)."""
        if id(network) not in self._segmenters:
            self._segmenters[id(network)] = (network, inference.Segmenter(
                network, self.source.rgb_mean, self.source.rgb_std, self.multiple, self.options,
                fill_holes=self.fill_holes, jit_compile=self.jit_compile,
                dtype=self.source.pixels.dtype))
        return self._segmenters[id(network)][1]

    def __call__(self, network):
        """`metrics.scores` of `network` (a Keras model on normalised images) on the whole set."""
        segmenter = self.segmenter(network)
        progress = None
        if self.out is not None:
            progress = Progress("evaluating", count_images(self._pairs), "images", out=self.out)
        return score(lambda images: segmenter.predict(images)["labels"], self.dataset,
                     self.source.class_names, progress)

    def examples(self, network, count):
        """The first `count` images: (images, labels, predicted labels), lists of numpy arrays."""
        segmenter = self.segmenter(network)
        images, labels, predictions = [], [], []
        for image, label in self._pairs.take(count):
            images.append(image.numpy())
            labels.append(label.numpy())
            predictions.append(segmenter.predict(image[None])["labels"][0].numpy())
        return images, labels, predictions
