"""AlexNet as in DC: five convolutions (128, 192, 256, 192, 192) with ReLU, three max poolings,
one linear classifier. DC pads the first convolution by 4 for 1-channel input and 2 otherwise;
here it is padded by 2 always (size-preserving), and poolings stop at 1x1 so 8 px works.
"""
from __future__ import annotations

from torch import nn

from ddcore.models.base import FeatureNet
from ddcore.models.layers import pool_or_identity
from ddcore.models.registry import register_model

# (out channels, kernel, padding, pool after)
LAYERS = ((128, 5, 2, True), (192, 5, 2, True), (256, 3, 1, False), (192, 3, 1, False), (192, 3, 1, True))


@register_model("AlexNet")
def alexnet(channels: int, num_classes: int, image_size: int) -> FeatureNet:
    blocks, pools = nn.ModuleList(), nn.ModuleList()
    size, in_channels = image_size, channels
    for out_channels, kernel, padding, pooled in LAYERS:
        blocks.append(nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, padding=padding), nn.ReLU(inplace=True)))
        pool, size = pool_or_identity(nn.MaxPool2d(2, 2), size) if pooled else (nn.Identity(), size)
        pools.append(pool)
        in_channels = out_channels
    return FeatureNet(blocks, nn.Linear(in_channels * size * size, num_classes), pools)
