"""DeepLab v2 on a Caffe-style ResNet-101 (the authors' default network).

Output stride 8 (stages 3 and 4 dilated 2 and 4 in every block), a classifier of four 3x3 convs with
dilations 6, 12, 18 and 24 whose logits are summed, and logits upsampled to the input size with
corner-aligned bilinear sampling. Every conv starts N(0, 0.01), as in the authors' code, before the
ImageNet weights are loaded. The backbone's batch norm is frozen by default: the authors' backbone
never trains gamma/beta (`requires_grad=False`) and `--freeze_bn` (in all their DeepLab recipes) keeps
the moving statistics too.
"""
import keras

from semiseg_tf.models import layers, registry, resnet

ASPP_DILATIONS = (6, 12, 18, 24)


def deeplab_v2(num_classes, blocks=resnet.RESNET101_BLOCKS, width=64, freeze_bn=True,
               aspp_two_branches=False, name="deeplab2_resnet101"):
    """Args:
      num_classes: channels of the logits.
      blocks, width: the ResNet's size (`resnet.resnet`); the defaults are ResNet-101.
      freeze_bn: backbone batch norm in inference mode (gamma/beta are never trained, as the authors').
      aspp_two_branches: the authors' bug (inherited from Hung et al.): their forward returns inside
        the branch loop, so only the dilation-6 and 12 branches count. The other two are then not built.
    """
    init = keras.initializers.RandomNormal(0.0, 0.01)
    # Gamma/beta are fixed whatever `freeze_bn` says; without it the statistics are batch statistics.
    bn_mode = layers.BN_FROZEN if freeze_bn else layers.BN_FIXED_AFFINE
    backbone = resnet.resnet("caffe", blocks, width, output_stride=8, bn_mode=bn_mode,
                             kernel_init=init)
    inputs = layers.image_input()
    features = backbone(inputs)["layer4"]
    dilations = ASPP_DILATIONS[:2] if aspp_two_branches else ASPP_DILATIONS
    fan_in = 9 * features.shape[-1]
    branches = [layers.conv(features, num_classes, 3, f"aspp_conv_d{d}", dilation=d, use_bias=True,
                            kernel_initializer=init, bias_initializer=layers.TorchBiasUniform(fan_in))
                for d in dilations]
    logits = keras.layers.Add(name="aspp_sum")(branches)
    logits = layers.ResizeLike(align_corners=True, name="upsample_logits")([logits, inputs])
    return keras.Model(inputs, logits, name=name)


def authors_update_multiplicities(network):
    """[(variable, k)]: how many times the authors' optimiser lists each backbone variable.

    Their `ResNetDeepLab.pretrained_parameters()` walks `for j in stage.modules(): for k in
    j.parameters()` over conv1, bn1 and layer1..4; `parameters()` is recursive too, so a weight is
    listed once for every module on its path from the stage down: `conv1` once, a block's conv
    (`layer3.5.conv2`) 3 times, a downsample conv (`layer1.0.downsample.0`) 4 times; PyTorch 1.4
    keeps the copies and updates the weight once per copy (`optim.LearningRateGroupsMixin.
    repeat_updates`). Batch norm is never trained and the head's `new_parameters()` lists each
    once. Only DeepLab v2 has this: the authors' other networks use plain `.parameters()`.
    """
    backbone = registry.backbone_of(network)
    if backbone is None or not network.name.startswith("deeplab2"):
        raise ValueError(f"{network.name} is not a DeepLab v2 network: only the authors' DeepLab v2 "
                         "lists its backbone parameters repeatedly")
    multiplicities = []
    for layer in backbone.layers:
        # Layer names are the PyTorch module paths with '.' as '_' (resnet.py).
        module_path = layer.name.split("_")
        multiplicities += [(variable, len(module_path)) for variable in layer.trainable_variables]
    return multiplicities


def build_deeplab2_resnet101(num_classes, freeze_bn=True, deeplab2_aspp_two_branches=False):
    return deeplab_v2(num_classes, freeze_bn=freeze_bn, aspp_two_branches=deeplab2_aspp_two_branches)


def build_deeplab2_small(num_classes, freeze_bn=True, deeplab2_aspp_two_branches=False):
    """The same code at a CPU-test size: one block per stage, 1/8 of the channels."""
    return deeplab_v2(num_classes, blocks=(1, 1, 1, 1), width=8, freeze_bn=freeze_bn,
                      aspp_two_branches=deeplab2_aspp_two_branches, name="deeplab2_small")
