"""How sure a prediction is, pixel by pixel, and pseudo-labels written as a folder dataset.

`predict --confidence` writes one of two maps as a 16-bit greyscale PNG (0-65535 for 0-1):
- max_probability: the probability of the predicted class;
- entropy: the entropy of the class probabilities divided by log(classes), so 0 is certain and 1
  is a uniform guess.
`--min_confidence=P` marks the pixels whose max probability is below P as 255 (ignore).
"""
import io
import os

import numpy as np
from PIL import Image

from semiseg_tf.data import layouts
from semiseg_tf.data.base import IGNORE_LABEL
from semiseg_tf.files import write_in_folder

KINDS = ("none", "max_probability", "entropy")


def max_probability(probabilities):
    """[..., C] class probabilities -> [...] the largest (the predicted class's)."""
    return np.asarray(probabilities, np.float32).max(-1)


def normalised_entropy(probabilities):
    """[..., C] class probabilities -> [...] their entropy / log(C), in [0, 1]."""
    p = np.asarray(probabilities, np.float64)
    logs = np.log(np.where(p > 0, p, 1.0))
    return (-(p * logs).sum(-1) / np.log(p.shape[-1])).clip(0, 1).astype(np.float32)


def png16(values):
    """[H, W] values in [0, 1] as a 16-bit greyscale PNG's bytes (value * 65535, rounded)."""
    scaled = (np.clip(values, 0, 1) * 65535 + 0.5).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(scaled).save(buffer, format="PNG")
    return buffer.getvalue()


def ignore_unsure(labels, surest, min_confidence):
    """`labels` with 255 (ignore) where the max probability (`surest`, [H, W]) is below
    `min_confidence`."""
    if min_confidence <= 0:
        return labels
    return np.where(surest < min_confidence, IGNORE_LABEL, labels).astype(np.asarray(labels).dtype)


class PseudoLabelFolder:
    """Pseudo-labels in the folder dataset's layout (docs/data.md, "Your own data"): DIR/images/
    (the input files, copied byte for byte), DIR/masks/ (class ids, 255 where unsure),
    classes.txt, palette.txt and labelled.txt, the images surest first (by the mean max
    probability of their pixels), so that --n_sup=k labels the k surest. Call `add` for each
    image, then `close`."""

    def __init__(self, folder, class_names, palette):
        self.folder, self.class_names, self.palette = folder, class_names, palette
        self.entries = []      # (mean confidence, name)

    def add(self, path, stem, mask_png, surest):
        """`path`: the input image; `stem`: its name in the dataset (predict's output name without
        .png); `mask_png`: its label map's PNG bytes; `surest`: its max-probability map."""
        with open(path, "rb") as f:
            write_in_folder(os.path.join(self.folder, "images", stem + os.path.splitext(path)[1]),
                            f.read())
        write_in_folder(os.path.join(self.folder, "masks", stem + ".png"), mask_png)
        self.entries.append((float(np.asarray(surest, np.float32).mean()), stem))

    def close(self):
        order = sorted(self.entries, key=lambda entry: (-entry[0], entry[1]))
        write_in_folder(os.path.join(self.folder, "labelled.txt"),
                        "".join(f"{name}\n" for _, name in order).encode())
        layouts.write_class_files(self.folder, self.class_names, self.palette)
