"""The public API (docs/python.md): what `import semiseg_tf` puts in the package's namespace.

Plain imports, so that a reader or a tool follows each name to its module; the package imports
this module when one of its names is first used (semiseg_tf/__init__.py says why not before).
"""
# networks
from semiseg_tf.models import available as available_networks, build as build_network
from semiseg_tf.models import input_multiple
# training
from semiseg_tf.semisup.mean_teacher import MeanTeacher
from semiseg_tf.semisup.methods.augmentation import StandardAugmentation
from semiseg_tf.semisup.methods.base import Perturbation, build as build_perturbation
from semiseg_tf.semisup.methods.mixing import ICT, CutMix, Cutout
from semiseg_tf.semisup.methods.pseudo_labels import FixMatch, UniMatch, UniMatchV2
from semiseg_tf.semisup.methods.vat import VAT
from semiseg_tf.augment.boxmask import BoxMaskParams
from semiseg_tf.semisup.optim import AuthorsSchedule, build_optimizer
# data
from semiseg_tf.data.user_datasets import evaluation_batches, training_batches
from semiseg_tf.augment.geometric import GeometricParams
from semiseg_tf.augment.colour import ColourParams
from semiseg_tf.augment.colour_cue import check as check_colour_cue
# inference and scores
from semiseg_tf.inference import InferenceOptions, Segmenter
from semiseg_tf.trained import open_model
from semiseg_tf.metrics import MeanIoU, PixelAccuracy, scores

__all__ = [
    "AuthorsSchedule", "BoxMaskParams", "ColourParams", "CutMix", "Cutout", "FixMatch",
    "GeometricParams", "ICT", "InferenceOptions", "MeanIoU", "MeanTeacher", "Perturbation",
    "PixelAccuracy", "Segmenter", "StandardAugmentation", "UniMatch", "UniMatchV2", "VAT",
    "available_networks", "build_network", "build_optimizer", "build_perturbation",
    "check_colour_cue", "evaluation_batches", "input_multiple", "open_model", "scores",
    "training_batches",
]
