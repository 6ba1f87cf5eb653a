"""ConvNet, the standard network of dataset distillation (Gidaris & Komodakis 2018; DC, Zhao et al. 2021).

Depth n blocks of conv3x3(width 128) -> norm -> ReLU, each followed by 2x2 average pooling, then a
linear classifier. Defaults follow DC's `get_default_convnet_setting` (width 128, depth 3, ReLU,
instance norm, average pooling); DC's instance norm is GroupNorm with one group per channel and
affine parameters, used here too. Difference: pooling is skipped once a map is 1x1, so every
depth works from 8 px up (DC would fail there).
"""
from __future__ import annotations

from torch import nn

from ddcore.models.base import FeatureNet
from ddcore.models.layers import make_norm, pool_or_identity
from ddcore.models.registry import register_model

WIDTH = 128


def convnet(channels: int, num_classes: int, image_size: int, depth: int, norm: str) -> FeatureNet:
    blocks, pools = nn.ModuleList(), nn.ModuleList()
    size, in_channels = image_size, channels
    for _ in range(depth):
        blocks.append(nn.Sequential(nn.Conv2d(in_channels, WIDTH, 3, padding=1), make_norm(norm, WIDTH, size), nn.ReLU(inplace=True)))
        pool, size = pool_or_identity(nn.AvgPool2d(2, 2), size)
        pools.append(pool)
        in_channels = WIDTH
    return FeatureNet(blocks, nn.Linear(WIDTH * size * size, num_classes), pools)


def _register(depth: int, norm: str, suffix: str) -> None:
    register_model(f"ConvNetD{depth}{suffix}")(
        lambda c, k, s: convnet(c, k, s, depth=depth, norm=norm)
    )


for _depth in range(1, 8):
    for _norm, _suffix in (("instance", ""), ("batch", "BN"), ("none", "NN")):
        _register(_depth, _norm, _suffix)
register_model("ConvNet")(lambda c, k, s: convnet(c, k, s, depth=3, norm="instance"))
