"""MLP of DC (Zhao et al. 2021, networks.py): the flattened image, two hidden layers of 128 ReLU
units, a linear classifier. DC sizes the input for 28 px grey or 32 px colour only; here it is
channels * size * size. The blocks are the two hidden layers, so `embed` is the 128-d hidden code.
"""

from __future__ import annotations

from torch import nn

from ddcore.models.base import FeatureNet
from ddcore.models.layers import dense_act
from ddcore.models.registry import register_model

WIDTH = 128


@register_model("MLP")
def mlp(channels: int, num_classes: int, image_size: int) -> FeatureNet:
    hidden1 = dense_act(channels * image_size * image_size, WIDTH, flatten=True)
    blocks = nn.ModuleList([hidden1, dense_act(WIDTH, WIDTH)])
    return FeatureNet(blocks, nn.Linear(WIDTH, num_classes))
