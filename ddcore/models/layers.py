"""Building blocks shared by the networks: the norm choice, conv -> norm -> ReLU, linear -> ReLU,
and pooling that stops at 1x1 (so every network accepts square images from 8 px up)."""

from __future__ import annotations

from torch import nn

from ddcore.errors import DDError

NORMS = ("instance", "batch", "none")


def make_norm(kind: str, channels: int, size: int) -> nn.Module:
    """The norm layer for a `channels` x `size` x `size` map.

    instance: DC's instance norm, GroupNorm with one group per channel and affine parameters
    (Zhao et al. 2021, networks.py); batch: BatchNorm2d; none: identity. Instance norm of a 1x1
    map is identically zero (one value per channel), so at that size it is left out: deep
    networks on small images still carry signal.
    """
    if kind not in NORMS:
        raise DDError(f"unknown norm '{kind}'; use one of {', '.join(NORMS)}")
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance" and size > 1:
        return nn.GroupNorm(channels, channels, affine=True)
    return nn.Identity()


def conv_out_size(size: int, kernel: int, padding: int, stride: int = 1) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def conv_norm_act(
    in_channels: int,
    out_channels: int,
    size: int,
    norm: str = "none",
    kernel: int = 3,
    padding: int = 1,
    bias: bool = True,
) -> nn.Sequential:
    """conv -> norm -> ReLU on a `size` px input; the norm is chosen for the conv's output size."""
    out_size = conv_out_size(size, kernel, padding)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=padding, bias=bias),
        make_norm(norm, out_channels, out_size),
        nn.ReLU(inplace=True),
    )


def dense_act(in_features: int, out_features: int, flatten: bool = False) -> nn.Sequential:
    """(flatten ->) linear -> ReLU: a hidden layer of an MLP head."""
    layers = [nn.Flatten()] if flatten else []
    return nn.Sequential(*layers, nn.Linear(in_features, out_features), nn.ReLU(inplace=True))


def pool2x2(kind: str, size: int) -> tuple[nn.Module, int]:
    """A 2x2 stride-2 'avg' or 'max' pooling of a `size` px map and the size after it.

    Identity once the map is 1x1: pooling it further is impossible (DC's networks have a fixed
    number of poolings sized for 28/32 px and fail on smaller images).
    """
    if size < 2:
        return nn.Identity(), size
    return (nn.AvgPool2d(2, 2) if kind == "avg" else nn.MaxPool2d(2, 2)), size // 2
