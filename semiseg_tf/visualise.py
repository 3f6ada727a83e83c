"""Pictures: colourised label maps in a run's own colours, titled panels, overlays, and the confusion
matrix."""
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IGNORE_COLOUR = (224, 224, 192)   # label 255, as in Pascal VOC's colour map


def pascal_colour_map(num_colours=256):
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
    colours[255] = IGNORE_COLOUR
    return colours


_PASCAL = pascal_colour_map()


def default_palette(num_classes):
    """((r, g, b), ...) of `num_classes` classes from the Pascal VOC colour map."""
    return tuple(tuple(int(v) for v in _PASCAL[k]) for k in range(num_classes))


def colour_table(palette=None):
    """uint8 [256, 3]: entry k is the colour of label k. `palette` ((r, g, b) per class) overrides
    the first classes of the Pascal VOC map; 255 (ignore) stays light grey."""
    table = _PASCAL.copy()
    if palette is not None:
        table[:len(palette)] = np.asarray(palette, np.uint8).reshape(-1, 3)
        table[255] = IGNORE_COLOUR
    return table


def colourise(labels, palette=None):
    """int label map [..., H, W] -> uint8 RGB [..., H, W, 3] in `palette`'s colours (see
    `colour_table`)."""
    return colour_table(palette)[np.asarray(labels, np.int64) % 256]


def label_png(labels, palette=None):
    """A label map [H, W] as palette-mode PNG bytes: its pixel values are the class ids (so it reads
    back as ids), its colours `palette`'s (see `colour_table`)."""
    image = Image.fromarray(np.asarray(labels, np.uint8), mode="P")
    image.putpalette(colour_table(palette).reshape(-1).tolist())
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def overlay(image, labels, palette=None, alpha=0.5, rows=256):
    """uint8 RGB [H, W, 3]: the label colours blended over `image` with weight `alpha`, `rows` rows
    at a time (the float copies of a large image would take 16 bytes a pixel each)."""
    image, labels = np.asarray(image), np.asarray(labels)
    blended = np.empty(image.shape[:-1] + (3,), np.uint8)
    for top in range(0, image.shape[-3], rows):
        colours = colourise(labels[..., top:top + rows, :], palette).astype(np.float32)
        blend = ((1 - alpha) * image[..., top:top + rows, :, :].astype(np.float32)
                 + alpha * colours)
        blended[..., top:top + rows, :, :] = (blend + 0.5).astype(np.uint8)
    return blended


def to_uint8_rgb(image, mean, std):
    """Normalised float image [..., H, W, 3] back to uint8 RGB."""
    rgb = np.asarray(image) * np.asarray(std) + np.asarray(mean)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def display_rgb(image):
    """uint8 RGB [..., H, W, 3] to look at of an image of any bands and pixel type: an 8-bit RGB
    image as it is; otherwise its first three bands (or its first, as grey), each stretched from
    its 2nd to its 98th percentile, as remote-sensing viewers show rasters."""
    image = np.asarray(image)
    if image.shape[-1] == 3 and image.dtype == np.uint8:
        return image
    shown = image[..., :3] if image.shape[-1] >= 3 else np.repeat(image[..., :1], 3, axis=-1)
    shown = shown.astype(np.float64)
    axes = tuple(range(shown.ndim - 3, shown.ndim - 1))       # each image's height and width
    low = np.percentile(shown, 2, axis=axes, keepdims=True)
    high = np.percentile(shown, 98, axis=axes, keepdims=True)
    stretched = (shown - low) / np.maximum(high - low, 1e-12)
    return (np.clip(stretched, 0, 1) * 255 + 0.5).astype(np.uint8)


def grey_to_rgb(values):
    """[..., H, W, 1] float in [0, 1] -> uint8 RGB."""
    grey = (np.clip(np.asarray(values), 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.repeat(grey, 3, axis=-1)


def _font(size=11):
    # Pillow's built-in scalable font: no font file needed on the machine.
    return ImageFont.load_default(size=size)


def _text_size(draw, text, font):
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def panel(rows, gap=2, titles=None, scale=1):
    """Tiles rows of uint8 [H, W, 3] images into one image with white gaps; `titles` (one per column)
    are written above the columns. `scale` enlarges the images (nearest neighbour, so labels stay
    sharp) before the titles are added, so small crops stay readable."""
    if scale != 1:
        rows = [[np.asarray(Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale),
                                                        Image.NEAREST)) for img in row]
                for row in rows]
    height = max(img.shape[0] for row in rows for img in row)
    width = max(img.shape[1] for row in rows for img in row)
    n_cols = max(len(row) for row in rows)
    font = _font()
    title_height = 0
    if titles:
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        title_height = max(_text_size(probe, t, font)[1] for t in titles) + 6
    out = np.full((title_height + len(rows) * (height + gap) - gap, n_cols * (width + gap) - gap, 3),
                  255, np.uint8)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            y, x = title_height + r * (height + gap), c * (width + gap)
            out[y:y + img.shape[0], x:x + img.shape[1]] = img
    if not titles:
        return out
    picture = Image.fromarray(out)
    draw = ImageDraw.Draw(picture)
    for c, title in enumerate(titles):
        # Cut to the column's width rather than running into the next column.
        while len(title) > 1 and _text_size(draw, title, font)[0] > width:
            title = title[:-1]
        text_width = _text_size(draw, title, font)[0]
        draw.text((c * (width + gap) + (width - text_width) // 2, 1), title, fill=(0, 0, 0), font=font)
    return np.asarray(picture)


class ConfusionLayout:
    """Where `confusion_picture` draws things, so tests can read a cell's colour."""

    def __init__(self, class_names, cell):
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        font = _font()
        name_width = max(_text_size(probe, n, font)[0] for n in class_names)
        self.cell = cell
        self.left = name_width + 28      # row names, and the 'truth' axis title beside them
        self.top = name_width + 28       # column names (turned upright), and the 'prediction' title
        size = cell * len(class_names)
        self.width, self.height = self.left + size + 8, self.top + size + 8

    def cell_centre(self, row, col):
        """(x, y) of the centre of cell (truth `row`, prediction `col`)."""
        return (self.left + col * self.cell + self.cell // 2, self.top + row * self.cell + self.cell // 2)


def confusion_colour(value):
    """The cell colour of a row share in [0, 1]: white (0) to dark blue (1), uint8 (r, g, b)."""
    low, high = np.array([255, 255, 255], np.float64), np.array([8, 48, 107], np.float64)
    return tuple(int(round(v)) for v in low + (high - low) * float(np.clip(value, 0, 1)))


def confusion_picture(confusion, class_names, cell=None):
    """The confusion matrix as a picture: row-normalised (each truth row sums to 1), rows = truth,
    columns = prediction, class names on both axes, each cell's share in percent when it fits.

    Returns:
      (uint8 RGB [H, W, 3], ConfusionLayout).
    """
    confusion = np.asarray(confusion, np.float64)
    num_classes = len(class_names)
    cell = cell or max(14, min(40, 600 // max(num_classes, 1)))
    layout = ConfusionLayout(class_names, cell)
    shares = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    picture = Image.new("RGB", (layout.width, layout.height), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    font, small = _font(), _font(9)
    for row in range(num_classes):
        for col in range(num_classes):
            x, y = layout.left + col * cell, layout.top + row * cell
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=confusion_colour(shares[row, col]),
                           outline=(230, 230, 230))
            if cell >= 28 and confusion[row].sum() > 0:
                text = f"{100 * shares[row, col]:.0f}"
                text_width, text_height = _text_size(draw, text, small)
                draw.text((x + (cell - text_width) // 2, y + (cell - text_height) // 2 - 1), text,
                          fill=(255, 255, 255) if shares[row, col] > 0.5 else (0, 0, 0), font=small)
    for k, name in enumerate(class_names):
        text_width, text_height = _text_size(draw, name, font)
        draw.text((layout.left - text_width - 4, layout.top + k * cell + (cell - text_height) // 2 - 2),
                  name, fill=(0, 0, 0), font=font)
        # Column names read bottom-up, as matplotlib's rotated tick labels.
        label = Image.new("RGB", (text_width + 2, text_height + 4), (255, 255, 255))
        ImageDraw.Draw(label).text((0, 0), name, fill=(0, 0, 0), font=font)
        label = label.rotate(90, expand=True)
        picture.paste(label, (layout.left + k * cell + (cell - label.width) // 2,
                              layout.top - label.height - 4))
    axis = Image.new("RGB", (_text_size(draw, "truth", font)[0] + 2, 16), (255, 255, 255))
    ImageDraw.Draw(axis).text((0, 0), "truth", fill=(90, 90, 90), font=font)
    picture.paste(axis.rotate(90, expand=True), (2, layout.top))
    draw.text((layout.left, 2), "prediction", fill=(90, 90, 90), font=font)
    return np.asarray(picture), layout


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
