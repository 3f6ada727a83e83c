"""Pictures of what the trainer sees: colourised label maps and side-by-side panels."""
import numpy as np


def palette(num_colours=256):
    """The Pascal VOC colour map (class 0 black, 255 a light grey for 'ignore'), uint8 [256, 3]."""
    colours = np.zeros((num_colours, 3), np.uint8)
    for index in range(num_colours):
        value, r, g, b = index, 0, 0, 0
        for shift in range(8):
            r |= ((value >> 0) & 1) << (7 - shift)
            g |= ((value >> 1) & 1) << (7 - shift)
            b |= ((value >> 2) & 1) << (7 - shift)
            value >>= 3
        colours[index] = (r, g, b)
    colours[255] = (224, 224, 192)
    return colours


_PALETTE = palette()


def colourise(labels):
    """int label map [..., H, W] -> uint8 RGB [..., H, W, 3]."""
    return _PALETTE[np.asarray(labels, np.int64) % 256]


def to_uint8_rgb(image, mean, std):
    """Normalised float image [..., H, W, 3] back to uint8 RGB."""
    rgb = np.asarray(image) * np.asarray(std) + np.asarray(mean)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def grey_to_rgb(values):
    """[..., H, W, 1] float in [0, 1] -> uint8 RGB."""
    grey = (np.clip(np.asarray(values), 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.repeat(grey, 3, axis=-1)


def panel(rows, gap=2):
    """Tiles a list of rows, each a list of uint8 [H, W, 3] images, into one image with white gaps."""
    height = max(img.shape[0] for row in rows for img in row)
    width = max(img.shape[1] for row in rows for img in row)
    n_cols = max(len(row) for row in rows)
    out = np.full((len(rows) * (height + gap) - gap, n_cols * (width + gap) - gap, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            y, x = r * (height + gap), c * (width + gap)
            out[y:y + img.shape[0], x:x + img.shape[1]] = img
    return out


def class_boundaries(label, ignore=255):
    """[H, W] bool: pixels with a 4-neighbour of another class, pixels labelled `ignore` left out."""
    label = np.asarray(label)
    edge = np.zeros(label.shape, bool)
    valid = label != ignore
    across_columns = (label[:, 1:] != label[:, :-1]) & valid[:, 1:] & valid[:, :-1]
    across_rows = (label[1:] != label[:-1]) & valid[1:] & valid[:-1]
    edge[:, 1:] |= across_columns
    edge[:, :-1] |= across_columns
    edge[1:] |= across_rows
    edge[:-1] |= across_rows
    return edge
