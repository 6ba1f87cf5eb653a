"""What every distillation method shares: a typed config, the `Method` protocol and its registry.

A method is one module: a config dataclass (subclassing `MethodConfig`), named presets, and a
`Method` subclass registered with `@register_method` whose `start` builds a `DistillRun` (the
method's state and its `step`). The loop in `ddcore.methods.loop` drives every run the same way;
`prepare` is expensive work done once before (PAD's experts), which trials time apart; `cost`
states what a distillation costs in units time models price (dry runs, `ddorch bench`). The loop
calls `callback` every `config.log_every` iterations (and after the last) with the mean losses
of that window: that is where the CLI logs to MLflow and where Ray Tune trials report and
checkpoint. Losses are read back from the device only then, so the loop never waits on the GPU.
The registry imports no method: `ddcore/methods/__init__.py` imports each method module.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ddcore.errors import DDError

if TYPE_CHECKING:
    from ddcore.data.base import RealDataset
    from ddcore.synthetic import SyntheticSet


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

    def with_overrides(self, **overrides: Any) -> MethodConfig:
        """A copy with some fields replaced; None means "keep"; unknown names are a one-line error."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise DDError(f"unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        types = {f.name: f.type for f in fields(self)}
        return replace(self, **{name: _typed(name, value, types[name]) for name, value in overrides.items()})

    def validate(self, images_per_class: list[int] | None = None) -> None:
        """One-line errors for values no run can use; `images_per_class` None: class sizes not known yet
        (before the data is loaded), so `ipc` is checked against them later."""
        if self.ipc < 1:
            raise DDError(f"ipc must be at least 1, got {self.ipc}")
        if images_per_class is not None and self.ipc > min(images_per_class):
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


# A config field's annotation -> the values it takes, and how an error names them.
_FIELD_TYPES = {
    "int": (numbers.Integral, "an integer"),
    "float": (numbers.Real, "a number"),
    "str": (str, "a string"),
    "bool": (bool, "true or false"),
}


def _typed(name: str, value: Any, annotation: str) -> Any:
    """`value` as the field's type (numpy ints and ints given for floats converted); one line otherwise."""
    if annotation not in _FIELD_TYPES:
        return value
    accepted, kind = _FIELD_TYPES[annotation]
    if not isinstance(value, accepted) or (isinstance(value, bool) and annotation != "bool"):
        raise DDError(f"{name} must be {kind}, got {value!r}")
    return int(value) if annotation == "int" else float(value) if annotation == "float" else value


@dataclass
class Preparation:
    """Work a method does once before distilling (PAD: its experts), for the trial to log."""

    artefacts: list[Path] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Cost:
    """What one distillation of a config costs, for time models (`orchestrator.engine.plan`, `ddorch bench`).

    `images_per_iteration`: images per class one iteration sends through the network (synthetic and
    real), by which a calibration timed at small sizes scales. `per_iteration` and `preparation`:
    counts of named units of work, each iteration's and the `prepare` work still to do (by the
    method's caches), which a time model prices with seconds per unit measured on a machine.
    """

    images_per_iteration: int
    per_iteration: dict[str, float] = field(default_factory=dict)
    preparation: dict[str, float] = field(default_factory=dict)


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
        # one read for all terms: on a GPU each read waits for the device
        sums = torch.stack(list(self._sums.values())) if self._sums else torch.zeros(0)
        means = dict(zip(self._sums, (sums / max(1, self._count)).tolist()))
        self._sums, self._count = {}, 0
        for name, value in means.items():
            if not math.isfinite(value):
                raise DDError(f"loss term '{name}' became {value} by iteration {iteration}; lower the learning rate")
        return means


Preset = Callable[[str, "int | None"], MethodConfig]  # (data set, IPC or None) -> config


class DistillRun:
    """One distillation in progress: the method's state. The loop calls `step` once per iteration.

    Built as `run_class(data, config, resume, start_iteration, progress)`: from scratch, or from
    `resume` (a checkpointed set) at `start_iteration`.
    """

    def step(self, iteration: int) -> dict[str, torch.Tensor]:
        """One update of the synthetic set; returns the loss terms (device tensors, not read back)."""
        raise NotImplementedError

    def snapshot(self) -> SyntheticSet:
        """A copy of the current synthetic set (on the CPU)."""
        raise NotImplementedError

    def after_window(self, iteration: int) -> None:
        """Checks that may read the device, once per `log_every` window (e.g. PAD's learned lr)."""


class Method:
    """A distillation method: its name, config class, presets, optional preparation and its run."""

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]]
    presets: ClassVar[dict[str, Preset]]  # the first is the default
    run_class: ClassVar[type[DistillRun]]  # the method's state and step

    @property
    def default_preset(self) -> str:
        return next(iter(self.presets))

    def config(self, preset: str | None, dataset: str, ipc: int | None = None) -> MethodConfig:
        """The preset's config (None: the method's default preset) for this data set and IPC."""
        preset = preset or self.default_preset
        if preset not in self.presets:
            raise DDError(f"unknown preset '{preset}' for {self.name}; known: {', '.join(self.presets)}")
        return self.presets[preset](dataset, ipc)

    def prepare(self, data: RealDataset, config: MethodConfig, progress: bool = False) -> Preparation:
        """The method's work before distilling (PAD trains or finds its experts); nothing for most."""
        return Preparation()

    def cost(self, config: MethodConfig, dataset: str) -> Cost:
        """What distilling `config` on `dataset` costs: by default its synthetic images, one
        `<name>_iteration` unit an iteration and no preparation."""
        return Cost(config.ipc, {f"{self.name}_iteration": 1.0})

    def distill(
        self,
        data: RealDataset,
        config: MethodConfig,
        callback: Callback | None = None,
        progress: bool = False,
        start: SyntheticSet | None = None,
        start_iteration: int = 0,
    ) -> SyntheticSet:
        """Learn the synthetic set with the shared loop; `start` resumes from a checkpointed set."""
        from ddcore.methods.loop import run_loop

        config.validate(data.class_counts())
        run = self.run_class(data, config, start, start_iteration, progress)
        return run_loop(run, config, self.name, callback, progress, start_iteration)


_METHODS: dict[str, Method] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: one instance of the method, found by `get_method(cls.name)`."""
    _METHODS[cls.name] = cls()
    return cls


def list_methods() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    if name not in _METHODS:
        raise DDError(f"unknown method '{name}'; known methods: {', '.join(list_methods())}")
    return _METHODS[name]
