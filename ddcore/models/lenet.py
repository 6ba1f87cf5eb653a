"""LeNet as in DC (Zhao et al. 2021, networks.py; LeCun et al. 1998): conv5x5(6) -> ReLU ->
maxpool, conv5x5(16) -> ReLU -> maxpool, then fully connected 120 -> 84 -> classes with ReLU.

Blocks: the two convolutions, then the two hidden dense layers (so the classifier is one linear
layer on the 84-d code, like every other network here). Differences from DC, whose first
convolution is padded by 2 for 1-channel input and not for colour so that both 28 px MNIST and
32 px CIFAR end at 16x5x5: here the first convolution is always padded by 2 (size-preserving),
the second is padded only when the map is smaller than its 5x5 kernel, poolings stop at 1x1, and
the first dense layer takes whatever 16 x s x s the image size gives.
"""

from __future__ import annotations

from torch import nn

from ddcore.models.base import FeatureNet
from ddcore.models.layers import conv_norm_act, conv_out_size, dense_act, pool2x2
from ddcore.models.registry import register_model


@register_model("LeNet")
def lenet(channels: int, num_classes: int, image_size: int) -> FeatureNet:
    conv1 = conv_norm_act(channels, 6, image_size, kernel=5, padding=2)
    pool1, size = pool2x2("max", image_size)
    padding2 = 0 if size >= 5 else 2
    conv2 = conv_norm_act(6, 16, size, kernel=5, padding=padding2)
    pool2, size = pool2x2("max", conv_out_size(size, 5, padding2))
    blocks = nn.ModuleList([conv1, conv2, dense_act(16 * size * size, 120, flatten=True), dense_act(120, 84)])
    pools = nn.ModuleList([pool1, pool2, nn.Identity(), nn.Identity()])
    return FeatureNet(blocks, nn.Linear(84, num_classes), pools)
