"""ConvNet, the standard network of dataset distillation (Gidaris & Komodakis 2018; used by DC,
Zhao et al. ICLR 2021, and DataDAM, Sajedi et al. ICCV 2023).

Depth n blocks of conv3x3 (128 channels, padding 1) -> norm -> ReLU, each followed by a 2x2
average pooling, then one linear classifier on the flattened map. Defaults follow DC's
`get_default_convnet_setting` (VICO-UoE/DatasetCondensation, utils.py): width 128, depth 3, ReLU,
instance norm (GroupNorm, one group per channel, affine), average pooling.

Names: `ConvNetD1`..`ConvNetD7` (instance norm), `ConvNetD{n}BN` (batch norm), `ConvNetD{n}NN`
(no norm); `ConvNet` is `ConvNetD3`. Narrower variants, for architecture-search pools (DC's
width ablation uses 32/64/128/256): `ConvNetD{n}W{w}` with w in `NARROW_WIDTHS`, same suffixes
(e.g. `ConvNetD3W32BN`); names without `W` are width 128. (DataDAM's own `ConvNet` uses batch norm: that is our
`ConvNetD3BN`.)

1-channel 28 px input (MNIST, Fashion-MNIST) gets DC's network exactly: DC's `_make_layers`
(networks.py) treats a 28 px image as 32 px and pads the first convolution by 3 when the input has
one channel, so the maps are 32 -> 16 -> 8 -> 4 and the classifier sees 128*4*4 = 2048 features.
Every published MNIST / Fashion-MNIST number of DC, DSA, DM, MTT, DataDAM, DATM and PAD used that
network. (With padding 1 the maps would be 28 -> 14 -> 7 -> 3 and the 7 -> 3 pooling would drop a
row and a column: DataDAM's loss differs by 32 % from the official one on equal weights.)

Differences from DC, so that every depth works on every size from 8 px up:
- DC pads by 3 for every 1-channel input whatever its size; here only 28 px input is padded by 3
  (where DC's sizes are defined); other sizes, 1 or 3 channels, pad by 1.
- Pooling is skipped once a map is 1x1 (ConvNetD7 brings 128 px MHIST exactly to 1x1; on 8 px
  digits its last four blocks keep 1x1 maps), and instance norm is left out at 1x1, where it
  would zero every feature (see `layers.make_norm`). DC would fail on these sizes.

`feature_maps` returns each block's ReLU output before its pooling: where DataDAM's forward hooks
(on every nn.ReLU of `features`) take the maps for its spatial attention.
"""

from __future__ import annotations

from torch import nn

from ddcore.models.base import FeatureNet
from ddcore.models.layers import conv_norm_act, conv_out_size, pool2x2
from ddcore.models.registry import register_model

WIDTH = 128
NARROW_WIDTHS = (32, 64)
MAX_DEPTH = 7


def first_padding(channels: int, image_size: int) -> int:
    """DC's padding of the first convolution: 3 for 1-channel 28 px input (maps of 32 px), else 1."""
    return 3 if channels == 1 and image_size == 28 else 1


def convnet(
    channels: int, num_classes: int, image_size: int, depth: int = 3, norm: str = "instance", width: int = WIDTH
) -> FeatureNet:
    blocks, pools = nn.ModuleList(), nn.ModuleList()
    size, in_channels = image_size, channels
    for d in range(depth):
        padding = first_padding(channels, image_size) if d == 0 else 1
        blocks.append(conv_norm_act(in_channels, width, size, norm, padding=padding))
        size = conv_out_size(size, 3, padding)
        pool, size = pool2x2("avg", size)
        pools.append(pool)
        in_channels = width
    return FeatureNet(blocks, nn.Linear(width * size * size, num_classes), pools)


def _register(name: str, depth: int, norm: str, width: int = WIDTH) -> None:
    register_model(name)(lambda c, k, s: convnet(c, k, s, depth=depth, norm=norm, width=width))


for _depth in range(1, MAX_DEPTH + 1):
    for _norm, _suffix in (("instance", ""), ("batch", "BN"), ("none", "NN")):
        _register(f"ConvNetD{_depth}{_suffix}", _depth, _norm)
        for _width in NARROW_WIDTHS:
            _register(f"ConvNetD{_depth}W{_width}{_suffix}", _depth, _norm, _width)
_register("ConvNet", 3, "instance")
