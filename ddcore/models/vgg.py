"""VGG11 as in DC (Zhao et al. 2021, networks.py; Simonyan & Zisserman 2015): five stages of 3x3
convolutions (64 | 128 | 256 256 | 512 512 | 512 512), each followed by a norm and ReLU, a 2x2 max
pooling after each stage, one linear classifier. `VGG11` uses DC's default instance norm,
`VGG11BN` batch norm.

A block is a stage, so `feature_maps` returns the five stage outputs (before pooling).
Difference: DC pads the first convolution by 3 for 1-channel input (28 px -> 32 px) and sizes the
classifier for 512 features (1x1 after five poolings of 32 px); here every convolution is padded
by 1, poolings stop at 1x1 (28 -> 14 -> 7 -> 3 -> 1 -> 1) and the classifier takes 512 x s x s.
"""

from __future__ import annotations

from torch import nn

from ddcore.models.base import FeatureNet
from ddcore.models.layers import conv_norm_act, pool2x2
from ddcore.models.registry import register_model

STAGES = ((64,), (128,), (256, 256), (512, 512), (512, 512))


def vgg11(channels: int, num_classes: int, image_size: int, norm: str) -> FeatureNet:
    blocks, pools = nn.ModuleList(), nn.ModuleList()
    size, in_channels = image_size, channels
    for stage in STAGES:
        layers = []
        for out_channels in stage:
            layers += conv_norm_act(in_channels, out_channels, size, norm)
            in_channels = out_channels
        blocks.append(nn.Sequential(*layers))
        pool, size = pool2x2("max", size)
        pools.append(pool)
    return FeatureNet(blocks, nn.Linear(in_channels * size * size, num_classes), pools)


register_model("VGG11")(lambda c, k, s: vgg11(c, k, s, norm="instance"))
register_model("VGG11BN")(lambda c, k, s: vgg11(c, k, s, norm="batch"))
