"""Segmentation networks, built by their catalog name (semiseg_tf/catalog.py).

Every network maps a normalised NHWC float image to logits at input resolution, [N, H, W, classes].
"""
from semiseg_tf.models.registry import (  # noqa: F401
    available, backbone_of, build, feature_split, has_feature_split, input_multiple, input_multiple_of)
# Imported so that Keras knows their layers when it loads a saved network.
from semiseg_tf.models import (  # noqa: F401
    deeplab_v2, deeplab_v3plus, dense_unet, dinov2, pspnet, small_unet)
