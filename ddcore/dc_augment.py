"""DC's evaluation augmentation (Zhao et al., ICLR 2021), the one DC trains MNIST networks with when
DSA is off: VICO-UoE/DatasetCondensation utils.py `augment` with `get_daparam`'s values.

Each image gets ONE operation drawn from the strategy (MNIST's: "crop_scale_rotate"):
- crop: pad by `crop` px with each channel's batch mean, cut a window at offset r, c in
  [0, 2 crop): the image moves by an integer in [-crop, crop) per axis;
- scale: nearest-neighbour resize to int(u H) x int(v H) pixels, u, v in [1 - scale, 1 + scale)
  (both from the height, as theirs), pasted centred on zeros, centre-cropped back to H x W;
- rotate: by an integer angle in [-rotate, rotate) degrees about the centre, the outside filled
  with the mean of the channel means;
- noise: add `noise` times a standard normal (only in their BatchNorm strategy "crop_noise").

Crop and scale are exact: the same pixels as theirs for the same draws. Differences: rotation is
bilinear (DSA's `resample`) where theirs is scipy's cubic spline with the array grown to hold the
corners and centre-cropped (the centre may differ by half a pixel); draws come from a generator
seeded per call on the images' device, and every operation is computed for the whole batch and
each image keeps its own (no per-image loop, no host work: theirs loops over images on the host).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ddcore.augment import resample
from ddcore.errors import DDError


@dataclass(frozen=True)
class DCAugParams:
    """`get_daparam`'s values; `strategy` is its MNIST one."""

    crop: int = 4  # pixels
    scale: float = 0.2  # size factor in [1 - scale, 1 + scale) per axis
    rotate: int = 45  # integer degrees in [-rotate, rotate)
    noise: float = 0.001
    strategy: str = "crop_scale_rotate"

    def operations(self) -> tuple[str, ...]:
        ops = tuple(self.strategy.split("_"))
        unknown = [op for op in ops if op not in _APPLY]
        if unknown:
            raise DDError(f"unknown DC augmentation '{unknown[0]}'; known: {', '.join(_APPLY)}")
        return ops


def _gather(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """out[k, :, i, j] = x[k, :, rows[k, i], cols[k, j]], or `fill[k]` where that index is outside x."""
    n, _, h, w = x.shape
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    k = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indices around a slice put their dims first: (n, h, w, c).
    picked = x[k, :, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]].permute(0, 3, 1, 2)
    return torch.where(inside[:, None], picked, fill)


def _crop(x: torch.Tensor, g: torch.Generator, p: DCAugParams) -> torch.Tensor:
    n, _, h, w = x.shape
    dy = torch.randint(0, 2 * p.crop, (n, 1), generator=g, device=x.device) - p.crop
    dx = torch.randint(0, 2 * p.crop, (n, 1), generator=g, device=x.device) - p.crop
    rows = torch.arange(h, device=x.device) + dy
    cols = torch.arange(w, device=x.device) + dx
    channel_means = x.mean(dim=(0, 2, 3)).view(1, -1, 1, 1).expand(n, -1, 1, 1)
    return _gather(x, rows, cols, channel_means)


def _pasted_index(size: int, resized: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """Per image, the source index of each of `size` output pixels along one axis: the image resized
    (nearest) to `resized` pixels, pasted at (side - resized) // 2 on a canvas of `side`, cut at
    (side - size) // 2; -1 where the canvas is empty."""
    k = torch.arange(size, device=resized.device) + (side - size) // 2 - (side - resized) // 2
    scale = size / resized.float()  # float32, as F.interpolate's "nearest" computes it
    source = torch.floor(k * scale).long().clamp(max=size - 1)
    return torch.where((k >= 0) & (k < resized), source, -1)


def _scale(x: torch.Tensor, g: torch.Generator, p: DCAugParams) -> torch.Tensor:
    n, c, h, w = x.shape
    factors = torch.rand(n, 2, generator=g, device=x.device) * (2 * p.scale) + (1 - p.scale)
    sizes = (factors * h).long()  # int() truncates; both sides from the height, as theirs
    side = sizes.max(dim=1, keepdim=True).values.clamp(min=max(h, w))  # their square canvas
    rows, cols = _pasted_index(h, sizes[:, :1], side), _pasted_index(w, sizes[:, 1:], side)
    return _gather(x, rows, cols, torch.zeros(n, c, 1, 1, dtype=x.dtype, device=x.device))


def rotate(x: torch.Tensor, degrees: torch.Tensor, fill: torch.Tensor | float) -> torch.Tensor:
    """Each (square) image turned by its angle in degrees about its centre; `fill` outside."""
    angle = torch.deg2rad(degrees.to(x.dtype))
    cos, sin = angle.cos(), angle.sin()
    return resample(x - fill, cos, -sin, sin, cos) + fill  # DSA's bilinear grid, zero outside: fill - fill


def _rotate(x: torch.Tensor, g: torch.Generator, p: DCAugParams) -> torch.Tensor:
    degrees = torch.randint(-p.rotate, p.rotate, (x.shape[0],), generator=g, device=x.device)
    return rotate(x, degrees, x.mean(dim=(0, 2, 3)).mean())  # cval: the mean of the channel means


def _noise(x: torch.Tensor, g: torch.Generator, p: DCAugParams) -> torch.Tensor:
    return x + p.noise * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


_APPLY = {"crop": _crop, "scale": _scale, "rotate": _rotate, "noise": _noise}


def dc_augment(x: torch.Tensor, seed: int, params: DCAugParams = DCAugParams()) -> torch.Tensor:
    """A batch (N, C, H, W) with one operation of `params.strategy` per image, drawn from `seed`."""
    operations = params.operations()
    g = torch.Generator(device=x.device).manual_seed(seed)
    choice = torch.randint(len(operations), (x.shape[0], 1, 1, 1), generator=g, device=x.device)
    out = x
    for index, name in enumerate(operations):
        out = torch.where(choice == index, _APPLY[name](x, g, params), out)
    return out
