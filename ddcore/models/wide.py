"""K networks of one architecture trained as one: each layer's K copies side by side in one wider layer.

Evaluating a set trains the same architecture from K seeds. Run one after another, each small
step (a 100-image batch at IPC 10, 10 images at IPC 1) pays the per-operation overhead of a deep
network K times. Here the K networks are one module: seed k owns channels k*C..(k+1)*C-1 of every
map, a convolution becomes a grouped convolution (groups x K) whose weight is the K weights
stacked, a norm layer gets K x its channels (instance/group norm and batch norm are per channel,
so no statistic mixes two seeds), and the classifier is a batched matrix product over seeds. The
input is K batches, one per seed, in the same positions.

Each seed's slice computes exactly its own network (up to the summation order of the grouped
convolution kernels), its gradient is that of its own loss, and SGD updates each element alone:
training the wide network trains the K networks (tests/test_wide.py checks it against K
sequential runs to float tolerance). Networks with a layer not listed here (e.g. ResNet's residual
blocks) are not widened: `widen` returns None and the caller trains them one by one.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ddcore.models.base import FeatureNet

# Layers that act on each channel alone: shared as they are.
_CHANNELWISE = (nn.ReLU, nn.Identity, nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)


class _Unsupported(Exception):
    pass


class _WideLinear(nn.Module):
    """K linear layers applied to (K, B, F) features: one batched matrix product."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach().transpose(0, 1) for m in layers]))
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers]).unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


def _seed_features(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, K*C, H, W) maps -> (K, B, C*H*W) features of each seed; features are left as they are."""
    return x.reshape(x.shape[0], k, -1).transpose(0, 1) if x.dim() == 4 else x


class _Flatten(nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _seed_features(x, self.k)


def _cat(tensors: list[torch.Tensor | None]) -> nn.Parameter | None:
    return None if tensors[0] is None else nn.Parameter(torch.cat([t.detach() for t in tensors]))


def _wide_conv(layers: list[nn.Conv2d]) -> nn.Conv2d:
    first, k = layers[0], len(layers)
    if not isinstance(first.padding, tuple) or first.padding_mode != "zeros":
        raise _Unsupported("convolution padding")
    wide = copy.deepcopy(first)
    wide.in_channels, wide.out_channels, wide.groups = k * first.in_channels, k * first.out_channels, k * first.groups
    wide.weight = _cat([m.weight for m in layers])
    wide.bias = _cat([m.bias for m in layers])
    return wide


def _wide_group_norm(layers: list[nn.GroupNorm]) -> nn.GroupNorm:
    first, k = layers[0], len(layers)
    wide = nn.GroupNorm(k * first.num_groups, k * first.num_channels, first.eps, first.affine)
    if first.affine:
        wide.weight, wide.bias = _cat([m.weight for m in layers]), _cat([m.bias for m in layers])
    return wide


def _wide_batch_norm(layers: list[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    first, k = layers[0], len(layers)
    if not (first.affine and first.track_running_stats):
        raise _Unsupported("batch norm without affine parameters or running statistics")
    wide = nn.BatchNorm2d(k * first.num_features, first.eps, first.momentum)
    wide.weight, wide.bias = _cat([m.weight for m in layers]), _cat([m.bias for m in layers])
    for name in ("running_mean", "running_var"):
        setattr(wide, name, torch.cat([getattr(m, name) for m in layers]))
    wide.num_batches_tracked = first.num_batches_tracked.clone()
    return wide


def _widen(layers: list[nn.Module]) -> nn.Module:
    """One wide module standing for the K equal-shaped `layers` (same type, same position)."""
    first, k = layers[0], len(layers)
    if isinstance(first, nn.Sequential):
        return nn.Sequential(*(_widen(list(parts)) for parts in zip(*layers)))
    if isinstance(first, nn.Conv2d):
        return _wide_conv(layers)
    if isinstance(first, nn.GroupNorm):
        return _wide_group_norm(layers)
    if isinstance(first, nn.BatchNorm2d):
        return _wide_batch_norm(layers)
    if isinstance(first, nn.Linear) and first.bias is not None:
        return _WideLinear(layers)
    if isinstance(first, nn.Flatten):
        return _Flatten(k)
    if isinstance(first, _CHANNELWISE):
        return copy.deepcopy(first)
    raise _Unsupported(type(first).__name__)


class WideNet(nn.Module):
    """K FeatureNets as one: `forward(x)` takes (K, B, C, H, W), one batch per network, and returns
    (K, B, classes); `forward_shared(x)` runs all K on the same (B, C, H, W) batch (testing)."""

    def __init__(self, models: list[FeatureNet]) -> None:
        super().__init__()
        self.k = len(models)
        self.blocks = nn.ModuleList(_widen(list(b)) for b in zip(*(m.blocks for m in models)))
        self.pools = nn.ModuleList(_widen(list(p)) for p in zip(*(m.pools for m in models)))
        self.classifier = _widen([m.classifier for m in models])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, b = x.shape[:2]
        return self._run(x.transpose(0, 1).reshape(b, k * x.shape[2], *x.shape[3:]))

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x.repeat(1, self.k, 1, 1))

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        for block, pool in zip(self.blocks, self.pools):
            x = pool(block(x))
        return self.classifier(_seed_features(x, self.k))


def widen(models: list[FeatureNet]) -> WideNet | None:
    """The K networks as one `WideNet` (their current weights), or None when a layer cannot be widened."""
    try:
        return WideNet(models)
    except _Unsupported:
        return None
