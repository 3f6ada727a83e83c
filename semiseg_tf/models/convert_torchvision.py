"""Converts a PyTorch ImageNet state dict into a weight file for `--backbone_weights`.

  python -m semiseg_tf.models.convert_torchvision --input=resnet101-5d3b4d8f.pth --output=resnet101.h5

Takes the files the authors used: torchvision's `resnet101-5d3b4d8f.pth` (DeepLab v2 and v3+) and
`densenet161-8d451a50.pth` (Dense U-net), and MIT CSAIL's deep-stem `resnet101-imagenet.pth`
(PSPNet). Our layers carry the PyTorch module paths as names ('.' as '_'), so the conversion is by
name: conv weights go from [out, in, h, w] to [h, w, in, out], batch norm's weight/bias/running
statistics become gamma/beta/moving statistics; the classifier (`fc`, `classifier`) is dropped.
Needs torch to read the .pth (`pip install -e .[convert]`); nothing else in the project does.
"""
import re

import numpy as np
from absl import app, flags

from semiseg_tf.models import weights as weights_lib


def define_flags():
    """The command's flags, defined only when it runs as a command: importing the converter (the
    tests do) must not take --input and --output from `python -m semiseg_tf.predict`."""
    flags.DEFINE_string("input", None, "A PyTorch state dict (.pth): torchvision ResNet-101 or "
                        "DenseNet-161, or MIT CSAIL's deep-stem ResNet-101.")
    flags.DEFINE_string("output", None, "The Keras HDF5 weight file to write (written "
                        "atomically).")


# Old torchvision DenseNet files name `norm.1` what the module now calls `norm1` (torchvision's own
# loader renames them the same way).
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
_DROPPED_PREFIXES = ("fc.", "classifier.")
_BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
             "running_var": "moving_variance"}


def convert_state_dict(state_dict):
    """{PyTorch key: numpy array} -> {Keras layer name: {variable: array}}."""
    modules = {}
    for key, value in state_dict.items():
        key = key[len("module."):] if key.startswith("module.") else key
        match = _OLD_DENSENET_KEY.match(key)
        if match:
            key = match.group(1) + match.group(2)
        key = key[len("features."):] if key.startswith("features.") else key
        if key.startswith(_DROPPED_PREFIXES) or key.endswith("num_batches_tracked"):
            continue
        module, parameter = key.rsplit(".", 1)
        modules.setdefault(module, {})[parameter] = np.asarray(value, np.float32)
    converted = {}
    for module, parameters in modules.items():
        name = module.replace(".", "_")
        if "running_mean" in parameters:  # batch norm
            converted[name] = {_BN_NAMES[p]: parameters[p] for p in _BN_NAMES}
        else:
            kernel = parameters["weight"]
            if kernel.ndim != 4:
                raise ValueError(f"{module}.weight has shape {kernel.shape}: expected a conv weight")
            layer = {"kernel": np.transpose(kernel, (2, 3, 1, 0))}
            if "bias" in parameters:
                layer["bias"] = parameters["bias"]
            converted[name] = layer
    return converted


def load_torch_state_dict(path):
    """The state dict of a .pth file as numpy arrays (needs torch)."""
    try:
        import torch
    except ImportError:
        raise SystemExit("convert_torchvision needs PyTorch to read .pth files: "
                         "pip install -e '.[convert]'") from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return {k: v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "detach")}


def main(argv):
    del argv
    if not flags.FLAGS.input or not flags.FLAGS.output:
        raise SystemExit("convert_torchvision: --input and --output are both required")
    try:
        state = load_torch_state_dict(flags.FLAGS.input)
    except (OSError, RuntimeError) as error:
        raise SystemExit(f"--input={flags.FLAGS.input}: cannot read as a PyTorch state dict "
                         f"({error})") from None
    converted = convert_state_dict(state)
    weights_lib.write_weight_file(flags.FLAGS.output, converted)
    count = sum(v.size for layer in converted.values() for v in layer.values())
    print(f"wrote {flags.FLAGS.output}: {len(converted)} layers, {count:,} values")


if __name__ == "__main__":
    define_flags()
    app.run(main)
