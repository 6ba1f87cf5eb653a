"""Differentiable Siamese Augmentation (DSA; Zhao & Bilen, ICML 2021).

Augmentations built from differentiable tensor ops (affine grids, masks, arithmetic), so the
gradient of a loss on augmented synthetic images reaches the synthetic pixels. "Siamese": the
same seed yields the same transformation for the real and the synthetic batch, so both sides of
a matching loss see the same view.

Follows the official `DiffAugment` / `ParamDiffAug` (DatasetCondensation repository): its default
mode 'S' applies ONE operation per call, chosen at random from the strategy (colour counts as
one: brightness, saturation and contrast in turn); parameters are drawn per sample (the default
`Siamese=False`), so with one seed sample i of either batch gets the same parameters. Defaults:
scale 1.2, rotate 15 degrees, crop (translation) 1/8 of the size, cutout 1/2 of the size, flip
probability 0.5, brightness 1.0, saturation 2.0, contrast 0.5. Differences: random numbers come
from a local generator seeded per call (the official code reseeds the global RNG), and `mode="all"`
applies every operation in order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ddcore.errors import DDError


@dataclass(frozen=True)
class DSAParams:
    scale: float = 1.2
    rotate_degrees: float = 15.0
    crop: float = 0.125
    cutout: float = 0.5
    flip_probability: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5
    mode: str = "single"  # "single": one random op per call (official 'S'); "all": every op in order


def _uniform(n: int, g: torch.Generator, x: torch.Tensor) -> torch.Tensor:
    return torch.rand(n, generator=g).to(device=x.device, dtype=x.dtype)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def _scale(x: torch.Tensor, g: torch.Generator, p: DSAParams) -> torch.Tensor:
    n = x.shape[0]
    sx = _uniform(n, g, x) * (p.scale - 1 / p.scale) + 1 / p.scale
    sy = _uniform(n, g, x) * (p.scale - 1 / p.scale) + 1 / p.scale
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
    return _affine(x, theta)


def _rotate(x: torch.Tensor, g: torch.Generator, p: DSAParams) -> torch.Tensor:
    angle = (_uniform(x.shape[0], g, x) - 0.5) * 2 * p.rotate_degrees / 180 * math.pi
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
    return _affine(x, theta)


def _flip(x: torch.Tensor, g: torch.Generator, p: DSAParams) -> torch.Tensor:
    flip = (_uniform(x.shape[0], g, x) < p.flip_probability).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


def _brightness(x: torch.Tensor, g: torch.Generator, p: DSAParams) -> torch.Tensor:
    return x + (_uniform(x.shape[0], g, x).view(-1, 1, 1, 1) - 0.5) * p.brightness


def _saturation(x: torch.Tensor, g: torch.Generator, p: DSAParams) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_uniform(x.shape[0], g, x).view(-1, 1, 1, 1) * p.saturation) + mean


def _contrast(x: torch.Tensor, g: torch.Generator, p: DSAParams) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x.shape[0], g, x).view(-1, 1, 1, 1) + p.contrast) + mean


def _pixel_grid(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.arange(x.shape[2], device=x.device).view(1, -1, 1)
    cols = torch.arange(x.shape[3], device=x.device).view(1, 1, -1)
    return rows, cols


def _random_offsets(n: int, limit: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(-limit, limit + 1, (n, 1, 1), generator=g).to(device)


def _crop(x: torch.Tensor, g: torch.Generator, p: DSAParams) -> torch.Tensor:
    """Translate by up to crop*size pixels, filling with zeros (the official 'crop')."""
    n, _, h, w = x.shape
    dy = _random_offsets(n, int(h * p.crop + 0.5), g, x.device)
    dx = _random_offsets(n, int(w * p.crop + 0.5), g, x.device)
    rows, cols = _pixel_grid(x)
    src_rows, src_cols = rows - dy, cols - dx  # (n, h, 1), (n, 1, w)
    valid = ((src_rows >= 0) & (src_rows < h) & (src_cols >= 0) & (src_cols < w)).unsqueeze(1)
    index = (src_rows.clamp(0, h - 1) * w + src_cols.clamp(0, w - 1)).flatten(1)  # (n, h*w)
    gathered = x.flatten(2).gather(2, index.unsqueeze(1).expand(-1, x.shape[1], -1)).view_as(x)
    return gathered * valid.to(x.dtype)


def _cutout(x: torch.Tensor, g: torch.Generator, p: DSAParams) -> torch.Tensor:
    """Zero a square of side cutout*size at a random position (it may hang over the edge)."""
    n, _, h, w = x.shape
    side_h, side_w = int(h * p.cutout + 0.5), int(w * p.cutout + 0.5)
    top = torch.randint(0, h + (1 - side_h % 2), (n, 1, 1), generator=g).to(x.device) - side_h // 2
    left = torch.randint(0, w + (1 - side_w % 2), (n, 1, 1), generator=g).to(x.device) - side_w // 2
    rows, cols = _pixel_grid(x)
    inside = (rows >= top) & (rows < top + side_h) & (cols >= left) & (cols < left + side_w)
    return x * (~inside).unsqueeze(1).to(x.dtype)


OPERATIONS = {
    "color": (_brightness, _saturation, _contrast),
    "crop": (_crop,),
    "cutout": (_cutout,),
    "flip": (_flip,),
    "scale": (_scale,),
    "rotate": (_rotate,),
}


def parse_strategy(strategy: str) -> list[str]:
    if strategy in ("", "none", "None"):
        return []
    ops = strategy.split("_")
    unknown = [op for op in ops if op not in OPERATIONS]
    if unknown:
        raise DDError(f"unknown DSA operation(s) {', '.join(unknown)}; valid: {', '.join(OPERATIONS)}")
    return ops


def dsa(images: torch.Tensor, strategy: str, seed: int, params: DSAParams = DSAParams()) -> torch.Tensor:
    """Augment `images` (N, C, H, W) differentiably; the same seed gives the same transformation."""
    ops = parse_strategy(strategy)
    if not ops:
        return images
    g = torch.Generator().manual_seed(int(seed))
    if params.mode == "single":
        ops = [ops[int(torch.randint(len(ops), (1,), generator=g))]]
    for op in ops:
        for transform in OPERATIONS[op]:
            images = transform(images, g, params)
    return images


def default_dsa_strategy(dataset: str) -> str:
    """The full strategy, without flips for digits (a flipped digit is another symbol)."""
    if dataset in ("digits", "mnist"):
        return "color_crop_cutout_scale_rotate"
    return "color_crop_cutout_flip_scale_rotate"
