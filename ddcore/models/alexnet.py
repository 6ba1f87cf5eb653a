"""AlexNet as in DC (Zhao et al. 2021, networks.py; Krizhevsky et al. 2012, narrowed for small
images): five convolutions (128 5x5, 192 5x5, 256 3x3, 192 3x3, 192 3x3) with ReLU, 2x2 max
pooling after the first, second and fifth, one linear classifier.

Difference: DC pads the first convolution by 4 for 1-channel input (28 px -> 32 px maps) and by 2
otherwise, and sizes the classifier for 4x4 maps; here it is padded by 2 always (size-preserving),
poolings stop at 1x1, and the classifier takes 192 x s x s for the actual size s (3x3 on MNIST).
"""

from __future__ import annotations

from torch import nn

from ddcore.models.base import FeatureNet
from ddcore.models.layers import conv_norm_act, pool2x2
from ddcore.models.registry import register_model

# (out channels, kernel, padding, max pooling after)
LAYERS = ((128, 5, 2, True), (192, 5, 2, True), (256, 3, 1, False), (192, 3, 1, False), (192, 3, 1, True))


@register_model("AlexNet")
def alexnet(channels: int, num_classes: int, image_size: int) -> FeatureNet:
    blocks, pools = nn.ModuleList(), nn.ModuleList()
    size, in_channels = image_size, channels
    for out_channels, kernel, padding, pooled in LAYERS:
        blocks.append(conv_norm_act(in_channels, out_channels, size, kernel=kernel, padding=padding))
        pool, size = pool2x2("max", size) if pooled else (nn.Identity(), size)
        pools.append(pool)
        in_channels = out_channels
    return FeatureNet(blocks, nn.Linear(in_channels * size * size, num_classes), pools)
