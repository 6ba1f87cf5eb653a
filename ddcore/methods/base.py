"""What every distillation method shares: a typed config, a step report, and `distill`.

A method module defines a config dataclass (subclassing `MethodConfig`), named presets, and
`distill(data, config, callback, progress) -> SyntheticSet`, and optionally `prepare(data,
config, progress) -> Preparation` for expensive work done once before (PAD's experts), which
trials time apart. The loop calls `callback` every `config.log_every` iterations (and after the
last) with the mean losses of that window: that is where the CLI logs to MLflow and where Ray
Tune trials report and checkpoint. Losses are read back from the device only then, so the loop
itself never waits on the GPU.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import torch

from ddcore.errors import DDError


@dataclass
class MethodConfig:
    """Fields every method has; methods add their own."""

    ipc: int = 10
    iterations: int = 1000
    model: str = "ConvNetD3"
    init: str = "real"  # "real" (random real images of the class) or "noise" (Gaussian)
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    seed: int = 0
    device: str = "auto"
    log_every: int = 10

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_overrides(self, **overrides: Any) -> "MethodConfig":
        """A copy with some fields replaced; None means "keep"; unknown names are a one-line error."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise DDError(f"unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        return replace(self, **overrides)

    def validate(self, images_per_class: list[int]) -> None:
        """One-line errors for values no run can use."""
        if self.ipc < 1:
            raise DDError(f"ipc must be at least 1, got {self.ipc}")
        if self.ipc > min(images_per_class):
            raise DDError(
                f"ipc {self.ipc} is more than the smallest class holds ({min(images_per_class)} training images)"
            )
        if self.iterations < 1:
            raise DDError(f"iterations must be positive, got {self.iterations}")
        if self.init not in ("real", "noise"):
            raise DDError(f"init must be 'real' or 'noise', got '{self.init}'")
        for name, value in asdict(self).items():
            if name.startswith("lr") and isinstance(value, float) and not value > 0:
                raise DDError(f"{name} must be positive, got {value}")


@dataclass
class Preparation:
    """Work a method does once before distilling (PAD: its experts), for the trial to log."""

    artefacts: list[Path] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class StepReport:
    """What the loop tells its caller every `log_every` iterations."""

    iteration: int  # iterations done so far
    losses: dict[str, float]  # mean of each loss term over the window
    snapshot: Callable[[], Any]  # returns the current SyntheticSet (a copy)


Callback = Callable[[StepReport], None]


class LossWindow:
    """Sums loss terms on the device and reads them back once per window (no per-step sync)."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def add(self, **terms: torch.Tensor) -> None:
        for name, value in terms.items():
            value = value.detach().float()
            self._sums[name] = self._sums[name] + value if name in self._sums else value
        self._count += 1

    def flush(self, iteration: int) -> dict[str, float]:
        means = {name: (total / max(1, self._count)).item() for name, total in self._sums.items()}
        self._sums, self._count = {}, 0
        for name, value in means.items():
            if not math.isfinite(value):
                raise DDError(f"loss term '{name}' became {value} by iteration {iteration}; lower the learning rate")
        return means
