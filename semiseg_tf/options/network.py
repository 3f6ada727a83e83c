"""Flags that choose the network and its pretrained weights."""
import dataclasses
import os

from semiseg_tf import catalog
from semiseg_tf.options import Section, Topic, absolute_path

TOPIC = Topic("Network", __name__)

TOPIC.define("string", "arch", "small_unet", "Network, by its name in the catalog: "
        f"{', '.join(catalog.network_names())}. The *_small networks are the same code at CPU-test "
        "size; dinov2_small and dinov2_base are DINOv2 ViT-S/14 and ViT-B/14 encoders with "
        "UniMatch V2's DPT decoder (input sides multiples of 14), dinov2_tiny the same at test size.")
TOPIC.define("string", "backbone_weights", None, "Pretrained backbone weights, a local file "
        "(nothing is downloaded): a keras.applications ResNet-101 weight file (.h5, e.g. "
        "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5) or the output of `python -m "
        "semiseg_tf.models.convert_torchvision` (torchvision's resnet101-5d3b4d8f.pth, "
        "densenet161-8d451a50.pth, MIT CSAIL's deep-stem resnet101); for the dinov2_* networks a "
        "folder: a Hugging Face DINOv2 checkpoint (config.json, model.safetensors; e.g. "
        "facebook/dinov2-small) or a keras-hub preset. Loaded into the student before"
        " the teacher copies it.")
TOPIC.define("boolean", "freeze_backbone", False, "Train only the decoder: the backbone's weights "
        "stay as loaded (and, in a batch-norm backbone, its statistics), which saves its gradients "
        "and optimiser state (UniMatch V2's lock_backbone, for small GPUs).")
TOPIC.define("boolean", "freeze_bn", True, "Backbone batch norm in inference mode (the authors' "
        "--freeze_bn, in all their DeepLab recipes). DeepLab v2 never trains its backbone's "
        "gamma/beta either way; the others still train them. Their ISIC recipe turns it off: "
        "--nofreeze_bn.")
TOPIC.define("boolean", "deeplab2_aspp_two_branches", False, "DeepLab v2: sum only the dilation-6 "
        "and 12 classifier branches, as the authors' code does by mistake; default all "
        "four.")

@dataclasses.dataclass(frozen=True)
class Network(Section):
    TOPIC = TOPIC
    PARSE = {"backbone_weights": absolute_path}
    arch: str
    backbone_weights: str
    freeze_backbone: bool
    freeze_bn: bool
    deeplab2_aspp_two_branches: bool

    def check(self):
        self.require(self.arch in catalog.network_names(), "arch",
                     f"unknown network; choose one of {', '.join(catalog.network_names())}")
        weights = catalog.network(self.arch).weights
        if weights == "folder":
            self.require(not self.backbone_weights or os.path.isdir(self.backbone_weights),
                         "backbone_weights", f"no such folder (--arch={self.arch} takes a Hugging "
                         "Face DINOv2 checkpoint folder or a keras-hub preset folder)")
        else:
            self.require(not self.backbone_weights or os.path.isfile(self.backbone_weights),
                         "backbone_weights", "no such file")
