"""Small building blocks shared by the networks."""
from __future__ import annotations

from torch import nn

from ddcore.errors import DDError


def make_norm(kind: str, channels: int, size: int) -> nn.Module:
    """instance: DC's instance norm (GroupNorm, one group per channel, affine); batch; none.

    Instance norm of a 1x1 map is always zero (one value per channel), so at that size the
    norm is left out: deep networks on small images still carry signal.
    """
    if kind == "instance" and size == 1:
        return nn.Identity()
    if kind == "instance":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise DDError(f"unknown norm '{kind}'; use instance, batch or none")


def pool_or_identity(pool: nn.Module, size: int, factor: int = 2) -> tuple[nn.Module, int]:
    """The pooling and the map size after it; no pooling once the map is already 1x1."""
    if size < factor:
        return nn.Identity(), size
    return pool, size // factor
