"""Segmentation networks, built by registered name.

Every network maps a normalised NHWC float image to logits at input resolution, [N, H, W, classes].
"""
from semiseg_tf.models.registry import available, build, input_multiple, register  # noqa: F401
from semiseg_tf.models import small_unet  # noqa: F401  (registers its networks)
