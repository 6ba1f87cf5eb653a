"""Random real subset: `ipc` real training images per class, picked at random; nothing is learned.

The reference every distillation method must beat (DD-Ranking's point: always compare against a
random real subset of the same size). It goes through the same trial, evaluation protocol and
lossless-IPC search as a learned method, so "how much does distillation buy?" is one command.

With the same seed it picks exactly the images DataDAM starts from (`init="real"`: the same
generator seed and the same per-class draw), so its accuracy is DataDAM's at iteration 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ddcore.data import get_spec
from ddcore.data.base import RealDataset
from ddcore.methods.base import Cost, DistillRun, Method, MethodConfig, register_method
from ddcore.synthetic import SyntheticSet


@dataclass
class RandomSubsetConfig(MethodConfig):
    """Only `ipc`, `seed` and the evaluation's `dsa_strategy` matter; `model` is unused (no network).

    Picking is a single step, so `iterations` is 1: the callback is called once, at the end.
    """

    iterations: int = 1

    def with_overrides(self, **overrides: Any) -> RandomSubsetConfig:
        """As every config's, but `iterations` stays 1 whatever `--iterations` (or a lossless search's,
        a suite row's budget) says: picking is one step, and the trial keeps one key in every budget."""
        overrides.pop("iterations", None)
        return super().with_overrides(**overrides)


def default_preset(dataset: str, ipc: int | None = None) -> RandomSubsetConfig:
    """The same defaults as DataDAM's paper preset where they matter to evaluation (IPC 10, DSA strategy)."""
    spec = get_spec(dataset)
    return RandomSubsetConfig(ipc=10 if ipc is None else ipc, dsa_strategy=spec.dsa_strategy, model=spec.model)


# Nothing to tune: one preset. Another method's preset name is an error here, like any unknown preset.
PRESETS = {"default": default_preset}


class RandomSubsetRun(DistillRun):
    """Picks once, in its single step; `resume` is ignored (one step leaves nothing to resume)."""

    def __init__(
        self,
        data: RealDataset,
        config: RandomSubsetConfig,
        resume: SyntheticSet | None,
        start_iteration: int,
        progress: bool,
    ):
        self.data, self.config = data, config
        self.picked: torch.Tensor | None = None  # indices into the training images

    def step(self, iteration: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003)  # DataDAM's draw for its real init
        self.picked = self.data.sample_per_class(self.config.ipc, generator).flatten()
        return {}

    def snapshot(self) -> SyntheticSet:
        assert self.picked is not None, "snapshot before the pick"
        data, config = self.data, self.config
        labels = torch.arange(data.num_classes).repeat_interleave(config.ipc)
        return SyntheticSet.of(data, data.train_images[self.picked], labels, "random", config.to_dict())  # a copy


@register_method
class RandomSubset(Method):
    """Pick `config.ipc` random real images per class (class-major, seeded by `config.seed`)."""

    name = "random"
    config_class = RandomSubsetConfig
    presets = PRESETS
    run_class = RandomSubsetRun

    def cost(self, config: RandomSubsetConfig, dataset: str) -> Cost:
        """Nothing an iteration: picking takes no time a time model would count."""
        return Cost(config.ipc)
