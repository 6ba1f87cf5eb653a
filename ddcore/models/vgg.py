"""VGG11 as in DC: stages of 3x3 convolutions (64 | 128 | 256 256 | 512 512 | 512 512), each conv
followed by a norm (instance norm by default, as DC; `VGG11BN` batch norm) and ReLU, a 2x2 max
pooling after each stage, one linear classifier. DC pads the first convolution by 3 for
1-channel 28 px input (making it 32 px); here all are padded by 1 and poolings stop at 1x1.
A block is a stage, so `features` returns the five stage outputs.
"""
from __future__ import annotations

from torch import nn

from ddcore.models.base import FeatureNet
from ddcore.models.layers import make_norm, pool_or_identity
from ddcore.models.registry import register_model

STAGES = ((64,), (128,), (256, 256), (512, 512), (512, 512))


def vgg11(channels: int, num_classes: int, image_size: int, norm: str) -> FeatureNet:
    blocks, pools = nn.ModuleList(), nn.ModuleList()
    size, in_channels = image_size, channels
    for stage in STAGES:
        layers = []
        for out_channels in stage:
            layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), make_norm(norm, out_channels, size), nn.ReLU(inplace=True)]
            in_channels = out_channels
        blocks.append(nn.Sequential(*layers))
        pool, size = pool_or_identity(nn.MaxPool2d(2, 2), size)
        pools.append(pool)
    return FeatureNet(blocks, nn.Linear(in_channels * size * size, num_classes), pools)


register_model("VGG11")(lambda c, k, s: vgg11(c, k, s, norm="instance"))
register_model("VGG11BN")(lambda c, k, s: vgg11(c, k, s, norm="batch"))
