"""ResNet-18 as in DC: a 3x3 stem (no max pooling, small images), four stages of two basic blocks
(64, 128, 256, 512 channels; strides 1, 2, 2, 2), instance norm by default (`ResNet18BN`: batch
norm). DC ends with a fixed 4x4 average pooling sized for 32 px; here a global average pooling,
so the classifier is 512 wide at every image size (torchvision's choice).
"""
from __future__ import annotations

import torch
from torch import nn

from ddcore.models.base import FeatureNet
from ddcore.models.layers import make_norm
from ddcore.models.registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (He et al. 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str, out_size: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            make_norm(norm, out_channels, out_size),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), make_norm(norm, out_channels, out_size),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), make_norm(norm, out_channels, out_size)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def resnet18(channels: int, num_classes: int, image_size: int, norm: str) -> FeatureNet:
    blocks = nn.ModuleList([
        nn.Sequential(nn.Conv2d(channels, 64, 3, padding=1, bias=False), make_norm(norm, 64, image_size), nn.ReLU(inplace=True))
    ])
    in_channels, size = 64, image_size
    for out_channels, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        size = (size - 1) // stride + 1  # a 3x3 convolution with padding 1
        blocks.append(nn.Sequential(
            BasicBlock(in_channels, out_channels, stride, norm, size), BasicBlock(out_channels, out_channels, 1, norm, size)
        ))
        in_channels = out_channels
    pools = nn.ModuleList([*(nn.Identity() for _ in range(4)), nn.AdaptiveAvgPool2d(1)])
    return FeatureNet(blocks, nn.Linear(512, num_classes), pools)


register_model("ResNet18")(lambda c, k, s: resnet18(c, k, s, norm="instance"))
register_model("ResNet18BN")(lambda c, k, s: resnet18(c, k, s, norm="batch"))
