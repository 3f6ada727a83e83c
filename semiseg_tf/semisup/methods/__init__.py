"""The consistency methods, one module per family: base.py (what every method is), mixing.py
(CutMix, Cutout, ICT), augmentation.py (standard augmentation), vat.py, pseudo_labels.py
(FixMatch, UniMatch, UniMatch V2). semiseg_tf/catalog.py lists them by name."""
from semiseg_tf.semisup.methods import augmentation, base, mixing, pseudo_labels, vat  # noqa: F401
