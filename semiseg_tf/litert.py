"""LiteRT (TensorFlow Lite) files of a trained network, for phones and edge devices.

Each file holds the whole inference path of the export (normalisation, padding, flip, scales,
tiles; the argmax too) at one fixed input size, which on-device runtimes prefer:

  serving_default  images uint8 [1, H, W, 3]
                   -> labels uint8 [1, H, W] (int32 past 256 classes)
                      (and probabilities float32 [1, H, W, C] when asked for)

Variants (TensorFlow's converter, `tf.lite.TFLiteConverter`):
  float32       the weights as trained;
  float16       weights stored as float16 (half the size), computed in float32 on CPUs;
  dynamic_int8  weights stored as int8, activations quantised on the fly (a quarter of the size);
  int8          weights and activations int8, calibrated on representative images (the run's
                training images); ops without an int8 kernel stay float.
"""
import tensorflow as tf

from semiseg_tf.errors import ConfigError, worded

VARIANTS = ("float32", "float16", "dynamic_int8", "int8")


def file_name(variant):
    return f"model-{variant}.tflite"


class FixedSizeModule(tf.Module):
    """The segmenter at one input size, as the converter takes it."""

    def __init__(self, segmenter, height, width, probabilities=False):
        super().__init__(name="semiseg_tf_litert")
        self.segmenter = segmenter
        # The network's variables, tracked here so that the converter bakes them into the file:
        # the Keras network inside the segmenter is not an attribute it follows.
        self.network_variables = [v.value for v in segmenter.network.weights]
        self.probabilities = bool(probabilities)
        spec = tf.TensorSpec([1, int(height), int(width), segmenter.bands], segmenter.dtype,
                             name="images")
        self.predict = tf.function(self._predict, input_signature=[spec])

    def _predict(self, images):
        outputs = self.segmenter(images)
        num_classes = outputs["probabilities"].shape[-1]
        result = {"labels": tf.cast(outputs["labels"],
                                    tf.uint8 if num_classes <= 256 else tf.int32)}
        if self.probabilities:
            result["probabilities"] = outputs["probabilities"]
        return result


def convert(segmenter, variant, size, folder, probabilities=False, representative=None):
    """The .tflite file's bytes of `segmenter` at `size` (height, width). `folder`: a scratch folder
    for the SavedModel the converter reads. `representative`: images [N, H, W, bands] of the
    segmenter's pixel type at `size`, needed by the int8 variant."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: expected one of {', '.join(VARIANTS)}")
    module = FixedSizeModule(segmenter, *size, probabilities=probabilities)
    tf.saved_model.save(module, folder,
                        signatures={"serving_default": module.predict.get_concrete_function()})
    converter = tf.lite.TFLiteConverter.from_saved_model(folder)
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        if representative is None or not len(representative):
            raise ValueError("the int8 variant needs representative images")
        converter.representative_dataset = lambda: ([image[None]] for image in representative)
    return converter.convert()


def interpreter(model_content):
    """A LiteRT interpreter of a file's bytes, its tensors allocated (the ai-edge-litert package,
    LiteRT's own runtime; TensorFlow's tf.lite.Interpreter is its deprecated copy)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        missing = "LiteRT's runtime is not installed, which checks the files: pip install -e .[litert]"
        raise worded(ConfigError, f"LiteRT: {missing}", f"--format=tflite: {missing}") from None
    runner = Interpreter(model_content=model_content)
    runner.allocate_tensors()
    return runner


def run(model_content, images):
    """The outputs of a file on images [N, H, W, bands] at its size, one image at a time:
    {name: [N, ...]}."""
    import numpy as np
    signature = interpreter(model_content).get_signature_runner()
    outputs = [signature(images=image[None]) for image in images]
    return {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}
