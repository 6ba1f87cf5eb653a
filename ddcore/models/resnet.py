"""ResNet-18 as in DC (Zhao et al. 2021, networks.py; He et al. 2016, CIFAR-style stem): a 3x3
stem convolution (no max pooling), four stages of two basic blocks (64, 128, 256, 512 channels;
strides 1, 2, 2, 2), convolutions without bias. `ResNet18` uses DC's default instance norm,
`ResNet18BN` batch norm.

Blocks: the stem, then one per stage, so `feature_maps` returns five maps.
Difference: DC ends with a fixed 4x4 average pooling (1x1 only for 28/32 px input); here a global
average pooling, so the classifier is 512 wide at every image size (torchvision's choice).
Instance norm is left out where a stage's map is 1x1 (see `layers.make_norm`).
"""

from __future__ import annotations

import torch
from torch import nn

from ddcore.models.base import FeatureNet
from ddcore.models.layers import conv_norm_act, conv_out_size, make_norm
from ddcore.models.registry import register_model

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, stride of the first block)


class BasicBlock(nn.Module):
    """relu(norm(conv3x3(relu(norm(conv3x3(x))))) + shortcut(x)); the shortcut is a strided 1x1
    convolution + norm when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str, out_size: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            make_norm(norm, out_channels, out_size),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            make_norm(norm, out_channels, out_size),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                make_norm(norm, out_channels, out_size),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def resnet18(channels: int, num_classes: int, image_size: int, norm: str) -> FeatureNet:
    blocks = nn.ModuleList([conv_norm_act(channels, 64, image_size, norm, bias=False)])
    in_channels, size = 64, image_size
    for out_channels, stride in STAGES:
        size = conv_out_size(size, 3, 1, stride)
        blocks.append(
            nn.Sequential(
                BasicBlock(in_channels, out_channels, stride, norm, size),
                BasicBlock(out_channels, out_channels, 1, norm, size),
            )
        )
        in_channels = out_channels
    pools = nn.ModuleList([*(nn.Identity() for _ in STAGES), nn.AdaptiveAvgPool2d(1)])
    return FeatureNet(blocks, nn.Linear(in_channels, num_classes), pools)


register_model("ResNet18")(lambda c, k, s: resnet18(c, k, s, norm="instance"))
register_model("ResNet18BN")(lambda c, k, s: resnet18(c, k, s, norm="batch"))
