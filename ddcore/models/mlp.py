"""MLP of DC (Zhao et al. 2021): two hidden layers of 128 ReLU units on the flattened image."""
from __future__ import annotations

from torch import nn

from ddcore.models.base import FeatureNet
from ddcore.models.registry import register_model

WIDTH = 128


@register_model("MLP")
def mlp(channels: int, num_classes: int, image_size: int) -> FeatureNet:
    blocks = nn.ModuleList([
        nn.Sequential(nn.Flatten(), nn.Linear(channels * image_size * image_size, WIDTH), nn.ReLU(inplace=True)),
        nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.ReLU(inplace=True)),
    ])
    return FeatureNet(blocks, nn.Linear(WIDTH, num_classes))
