"""Flags of the training crops' geometric and colour augmentation."""
from semiseg_tf.options import Topic

TOPIC = Topic("Augmentation", __name__)

TOPIC.define("string", "crop_size", "64,64", "Training crop 'H,W' in pixels; images smaller than "
        "the crop are padded with the mean colour and the ignore label.")
TOPIC.define("boolean", "aug_hflip", False, "Random horizontal flips of training crops.")
TOPIC.define("boolean", "aug_vflip", False, "Random vertical flips of training crops.")
TOPIC.define("boolean", "aug_scale_hung", False, "Hung et al.'s random scale in {0.5, 0.6, ..., "
        "1.5} before cropping (the paper's Pascal VOC augmentation).")
TOPIC.define("boolean", "aug_hvflip", False, "Random diagonal flips (transpose) of training crops; "
        "needs a square crop.")
TOPIC.define("float", "aug_max_scale", 1.0, "Rotate/scale/crop augmentation: scale drawn log-"
        "uniformly from [1/s, s] (ISIC: 1.1). Used when --aug_scale_hung is off and this or "
        "--aug_rot_mag is set; borders are mirrored (OpenCV BORDER_REFLECT_101).")
TOPIC.define("boolean", "aug_scale_non_uniform", False, "Rotate/scale/crop: independent x and y "
        "scales.")
TOPIC.define("float", "aug_rot_mag", 0.0, "Rotate/scale/crop: rotation drawn from U(-m, m) degrees "
        "(ISIC: 45).")
TOPIC.define("float", "aug_offset_range", 16.0, "Standard-augmentation consistency "
        "(--perturbation=augment): the student's crop is offset from the teacher's by up to this "
        "many pixels per axis.")
TOPIC.define("boolean", "aug_free_scale_rot", False, "--perturbation=augment: the student's view "
        "gets its own scale and rotation (otherwise the views differ by offset, flips and Hung "
        "scale).")
TOPIC.define("boolean", "aug_strong_colour", False, "Colour-augment the student's view of "
        "unlabelled images (not the teacher's): torchvision ColorJitter with the --aug_colour_* "
        "strengths, then greyscale (the authors' last commit, SPEC 3.8). Works with every "
        "perturbation.")
TOPIC.define("float", "aug_strong_blur", 0.0, "Probability of a Gaussian blur of the student's "
        "view of unlabelled images (after --aug_strong_colour), its standard deviation from U(0.1, "
        "2.0) pixels, as FixMatch's and UniMatch's strong view (0.5 there); 0: no blur. Works with "
        "every perturbation.")
TOPIC.define("float", "aug_colour_brightness", 0.4, "Colour augmentation: brightness factor drawn "
        "from U(1-b, 1+b).")
TOPIC.define("float", "aug_colour_contrast", 0.4, "Colour augmentation: contrast factor from U(1-c,"
        " 1+c).")
TOPIC.define("float", "aug_colour_saturation", 0.4, "Colour augmentation: saturation factor from "
        "U(1-s, 1+s).")
TOPIC.define("float", "aug_colour_hue", 0.1, "Colour augmentation: hue shift from U(-h, h), in "
        "turns (at most 0.5).")
TOPIC.define("float", "aug_colour_prob", 0.8, "Colour augmentation: probability of applying the "
        "jitter.")
TOPIC.define("float", "aug_colour_greyscale_prob", 0.2, "Colour augmentation: probability of making"
        " the student's view grey (after the jitter).")
