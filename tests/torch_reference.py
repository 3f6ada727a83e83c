"""torchvision's ResNet and DenseNet, written out in plain torch for the converter's tests.

The pinned torchvision does not import beside the CPU build of torch that these machines get
(importing it fails with `operator torchvision::nms does not exist`), so the tests build the two
reference networks here: the same modules, the same forward passes and the same state-dict names
as torchvision.models.resnet101() and densenet161() (torchvision 0.x, `models/resnet.py` and
`models/densenet.py`), without the weight initialisation (the tests draw their own weights).
Imported only where torch is installed (the `test` extra has it).
"""
from collections import OrderedDict

import torch
from torch import nn


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: the stride on the 3x3 conv."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, blocks=(3, 4, 23, 3), num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, blocks[0])
        self.layer2 = self._make_layer(128, blocks[1], stride=2)
        self.layer3 = self._make_layer(256, blocks[2], stride=2)
        self.layer4 = self._make_layer(512, blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)

    def _make_layer(self, planes, count, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def features(self, x):
        """Up to layer4 (no pooling, no classifier): what the segmentation backbones use."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class DenseLayer(nn.Module):
    def __init__(self, in_features, growth_rate, bn_size):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_features, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, inputs):
        x = self.conv1(self.relu1(self.norm1(torch.cat(inputs, 1))))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.ModuleDict):
    def __init__(self, count, in_features, growth_rate, bn_size):
        super().__init__()
        for i in range(count):
            self.add_module(f"denselayer{i + 1}",
                            DenseLayer(in_features + i * growth_rate, growth_rate, bn_size))

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(in_features))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(in_features, out_features, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(2, stride=2))


class DenseNet(nn.Module):
    """densenet161() by default: growth 48, blocks (6, 12, 36, 24), 96 initial features."""

    def __init__(self, growth_rate=48, blocks=(6, 12, 36, 24), init_features=96, bn_size=4,
                 num_classes=1000):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(3, init_features, 7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm2d(init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(3, stride=2, padding=1)),
        ]))
        features = init_features
        for i, count in enumerate(blocks):
            self.features.add_module(f"denseblock{i + 1}",
                                     DenseBlock(count, features, growth_rate, bn_size))
            features += count * growth_rate
            if i != len(blocks) - 1:
                self.features.add_module(f"transition{i + 1}", Transition(features, features // 2))
                features //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(features))
        self.classifier = nn.Linear(features, num_classes)


class ResidualConvUnit(nn.Module):
    """DPT's residual unit (UniMatch V2's model/util/blocks.py, bn=False): relu, conv, relu, conv, +x."""

    def __init__(self, features):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x):
        out = self.conv1(torch.relu(x))
        return self.conv2(torch.relu(out)) + x


class FeatureFusionBlock(nn.Module):
    """RefineNet's fusion: (+ unit 1 of the skip), unit 2, bilinear (corners aligned), 1x1 conv."""

    def __init__(self, features):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, *xs, size=None):
        output = xs[0]
        if len(xs) == 2:
            output = output + self.resConfUnit1(xs[1])
        output = self.resConfUnit2(output)
        modifier = {"scale_factor": 2} if size is None else {"size": size}
        output = nn.functional.interpolate(output, **modifier, mode="bilinear", align_corners=True)
        return self.out_conv(output)


class DPTHead(nn.Module):
    """UniMatch V2's DPTHead (model/semseg/dpt.py, use_bn=False), with the final resize of its DPT:
    token maps [B, C, h, w] x 4 -> logits [B, classes, 14 h, 14 w]."""

    def __init__(self, nclass, in_channels, features, out_channels):
        super().__init__()
        self.projects = nn.ModuleList([nn.Conv2d(in_channels, c, 1) for c in out_channels])
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(out_channels[0], out_channels[0], 4, stride=4),
            nn.ConvTranspose2d(out_channels[1], out_channels[1], 2, stride=2),
            nn.Identity(),
            nn.Conv2d(out_channels[3], out_channels[3], 3, stride=2, padding=1)])
        self.scratch = nn.Module()
        for i, c in enumerate(out_channels):
            setattr(self.scratch, f"layer{i + 1}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", FeatureFusionBlock(features))
        self.scratch.output_conv = nn.Sequential(nn.Conv2d(features, features, 3, padding=1),
                                                 nn.ReLU(True), nn.Conv2d(features, nclass, 1))

    def forward(self, maps, patch_size=14):
        layers = [self.resize_layers[i](self.projects[i](x)) for i, x in enumerate(maps)]
        rn = [getattr(self.scratch, f"layer{i + 1}_rn")(x) for i, x in enumerate(layers)]
        path = self.scratch.refinenet4(rn[3], size=rn[2].shape[2:])
        path = self.scratch.refinenet3(path, rn[2], size=rn[1].shape[2:])
        path = self.scratch.refinenet2(path, rn[1], size=rn[0].shape[2:])
        path = self.scratch.refinenet1(path, rn[0])
        out = self.scratch.output_conv(path)
        size = (maps[0].shape[2] * patch_size, maps[0].shape[3] * patch_size)
        return nn.functional.interpolate(out, size, mode="bilinear", align_corners=True)
