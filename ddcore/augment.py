"""Differentiable Siamese Augmentation (DSA; Zhao & Bilen, ICML 2021).

Augmentations built only from differentiable tensor ops (affine grids with `grid_sample`,
index gathers, masks, arithmetic), so the gradient of a loss on augmented synthetic images
reaches the synthetic pixels. Follows the official `DiffAugment` / `ParamDiffAug`
(VICO-UoE/DatasetCondensation utils.py, copied unchanged into DataDistillation/DataDAM):

- the operations and their defaults (`DSAParams`): colour = brightness (+-0.5), saturation
  (x[0, 2]) and contrast (x[0.5, 1.5]) in turn; crop = a translation by up to 1/8 of the size
  with zero fill; cutout = a zeroed square of half the size; flip with probability 0.5; scale by
  a factor in [1/1.2, 1.2] per axis; rotate by up to 15 degrees.
- the default mode, official 'S': each call applies ONE operation, drawn at random from the
  strategy (so `"color_crop"` is colour or crop, not both). `mode="all"` is official 'M': every
  operation in the order the strategy names them.
- Siamese: the official code, when given a seed (as every matching loop does), draws the
  parameters once and uses them for the whole batch. So the real batch (e.g. 256 images of a
  class) and the synthetic batch (its IPC images) get the very same transformation, whatever
  their sizes: that is what `dsa(real, s, seed)` and `dsa(synthetic, s, seed)` do here.
  `DSAParams(per_sample=True)` draws separate parameters per image, as the official code does
  when called without a seed (training evaluation networks on the synthetic set).

Differences: random numbers come from a local generator on the images' device, seeded per call
(the official code reseeds the global RNG before every draw); `affine_grid` and
`grid_sample` use the official defaults written out (bilinear, zero padding, align_corners=False).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ddcore.errors import DDError

MODES = ("single", "all")


@dataclass(frozen=True)
class DSAParams:
    """The official `ParamDiffAug` defaults (names ours)."""

    scale: float = 1.2  # per-axis scale factor in [1/scale, scale]
    rotate_degrees: float = 15.0  # angle in [-rotate, rotate]
    crop: float = 0.125  # translation of up to crop * size pixels per axis
    cutout: float = 0.5  # side of the zeroed square, as a fraction of the size
    flip_probability: float = 0.5
    brightness: float = 1.0  # add (u - 0.5) * brightness
    saturation: float = 2.0  # scale the deviation from the channel mean by u * saturation
    contrast: float = 0.5  # scale the deviation from the image mean by u + contrast
    mode: str = "single"  # "single": one random op per call (official 'S'); "all": every op (official 'M')
    per_sample: bool = False  # False: one draw for the whole batch (siamese); True: one draw per image

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise DDError(f"unknown DSA mode '{self.mode}'; use one of {', '.join(MODES)}")


class _Draws:
    """Random parameters from a generator seeded per call on the images' device (on a GPU no host
    random numbers and no copies), one per batch or one per image, as (n,) tensors."""

    def __init__(self, seed: int, x: torch.Tensor, per_sample: bool) -> None:
        self.seed = seed
        self.generator = torch.Generator(device=x.device).manual_seed(seed)
        self.n, self.device, self.dtype = x.shape[0], x.device, x.dtype
        self.count = self.n if per_sample else 1

    def uniform(self) -> torch.Tensor:
        u = torch.rand(self.count, generator=self.generator, device=self.device)
        return u.expand(self.n).to(self.dtype)

    def integers(self, low: int, high: int) -> torch.Tensor:
        """Uniform integers in [low, high)."""
        k = torch.randint(low, high, (self.count,), generator=self.generator, device=self.device)
        return k.expand(self.n)

    def choice(self, options: int) -> int:
        """One of `options`, decided on the host (it picks the code to run): from the same stream on
        the CPU, from a host generator with the same seed elsewhere (reading a GPU draw would sync)."""
        host = self.generator if self.device.type == "cpu" else torch.Generator().manual_seed(self.seed)
        return int(torch.randint(options, (1,), generator=host))


def _as_map(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _brightness(x: torch.Tensor, draws: _Draws, p: DSAParams) -> torch.Tensor:
    return x + (_as_map(draws.uniform()) - 0.5) * p.brightness


def _saturation(x: torch.Tensor, draws: _Draws, p: DSAParams) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_as_map(draws.uniform()) * p.saturation) + mean


def _contrast(x: torch.Tensor, draws: _Draws, p: DSAParams) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_as_map(draws.uniform()) + p.contrast) + mean


def resample(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Sample x on the grid of the linear map [[a, b], [c, d]] (normalised coordinates, no shift)."""
    zero = torch.zeros_like(a)
    theta = torch.stack([torch.stack([a, b, zero], 1), torch.stack([c, d, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _scale(x: torch.Tensor, draws: _Draws, p: DSAParams) -> torch.Tensor:
    low = 1.0 / p.scale
    sx = draws.uniform() * (p.scale - low) + low
    sy = draws.uniform() * (p.scale - low) + low
    zero = torch.zeros_like(sx)
    return resample(x, sx, zero, zero, sy)


def _rotate(x: torch.Tensor, draws: _Draws, p: DSAParams) -> torch.Tensor:
    angle = (draws.uniform() - 0.5) * 2 * math.radians(p.rotate_degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    return resample(x, cos, -sin, sin, cos)


def _flip(x: torch.Tensor, draws: _Draws, p: DSAParams) -> torch.Tensor:
    return torch.where(_as_map(draws.uniform() < p.flip_probability), x.flip(3), x)


def _crop(x: torch.Tensor, draws: _Draws, p: DSAParams) -> torch.Tensor:
    """Translate by up to crop * size pixels per axis; pixels shifted in from outside are zero.

    As the official code: pad by one zero pixel, then gather each output pixel from its shifted
    (clamped) source, so every out-of-range source reads the zero border.
    """
    n, _, h, w = x.shape
    reach_h, reach_w = int(h * p.crop + 0.5), int(w * p.crop + 0.5)
    dy = draws.integers(-reach_h, reach_h + 1).view(n, 1)
    dx = draws.integers(-reach_w, reach_w + 1).view(n, 1)
    rows = (torch.arange(h, device=x.device) + dy + 1).clamp(0, h + 1)  # (n, h) in padded coordinates
    cols = (torch.arange(w, device=x.device) + dx + 1).clamp(0, w + 1)  # (n, w)
    padded = F.pad(x, (1, 1, 1, 1))
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (n, h, w, c) -> (n, c, h, w)


def _cutout(x: torch.Tensor, draws: _Draws, p: DSAParams) -> torch.Tensor:
    """Zero a square of side cutout * size centred at a random pixel (it may hang over the edge)."""
    n, _, h, w = x.shape
    side_h, side_w = int(h * p.cutout + 0.5), int(w * p.cutout + 0.5)
    top = (draws.integers(0, h + 1 - side_h % 2) - side_h // 2).view(n, 1, 1)
    left = (draws.integers(0, w + 1 - side_w % 2) - side_w // 2).view(n, 1, 1)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
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
    """`"color_crop"` -> ["color", "crop"]; `""`, `"none"` -> []; an unknown op is a DDError."""
    if strategy in ("", "none", "None"):
        return []
    ops = strategy.split("_")
    unknown = [op for op in ops if op not in OPERATIONS]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise DDError(f"unknown DSA operation(s) {names} in '{strategy}'; valid: {', '.join(OPERATIONS)}")
    return ops


def dsa(images: torch.Tensor, strategy: str, seed: int, params: DSAParams = DSAParams()) -> torch.Tensor:
    """Augment `images` (N, C, H, W) differentiably with `strategy`, e.g.
    "color_crop_cutout_flip_scale_rotate"; "" or "none" returns `images` itself.

    The same seed gives the same transformation, so call it with one seed on the real and on the
    synthetic batch (siamese). The global RNG is never touched.
    """
    ops = parse_strategy(strategy)
    if not ops:
        return images
    draws = _Draws(int(seed), images, params.per_sample)
    if params.mode == "single":
        ops = [ops[draws.choice(len(ops))]]
    for op in ops:
        for transform in OPERATIONS[op]:
            images = transform(images, draws, params)
    return images
