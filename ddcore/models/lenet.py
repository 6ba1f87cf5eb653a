"""LeNet as in DC: conv5x5(6) -> ReLU -> maxpool, conv5x5(16) -> ReLU -> maxpool, MLP head 120-84.

DC pads the first convolution by 2 (for 28 px MNIST) and not the second; here the second is
also padded when the map is smaller than 8 px, so images down to 8 px work.
"""
from __future__ import annotations

from torch import nn

from ddcore.models.base import FeatureNet
from ddcore.models.layers import pool_or_identity
from ddcore.models.registry import register_model


@register_model("LeNet")
def lenet(channels: int, num_classes: int, image_size: int) -> FeatureNet:
    pool1, size = pool_or_identity(nn.MaxPool2d(2, 2), image_size)
    padding2 = 0 if size >= 8 else 2
    size = size + 2 * padding2 - 4
    pool2, size = pool_or_identity(nn.MaxPool2d(2, 2), size)
    blocks = nn.ModuleList([
        nn.Sequential(nn.Conv2d(channels, 6, 5, padding=2), nn.ReLU(inplace=True)),
        nn.Sequential(nn.Conv2d(6, 16, 5, padding=padding2), nn.ReLU(inplace=True)),
    ])
    head = nn.Sequential(
        nn.Linear(16 * size * size, 120), nn.ReLU(inplace=True),
        nn.Linear(120, 84), nn.ReLU(inplace=True),
        nn.Linear(84, num_classes),
    )
    return FeatureNet(blocks, head, nn.ModuleList([pool1, pool2]))
