"""Distillation methods by name. Each is one module with a config dataclass, presets and `distill`."""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from ddcore.errors import DDError
from ddcore.data.base import RealDataset
from ddcore.methods.base import Callback, MethodConfig, Preparation, StepReport


@dataclass(frozen=True)
class Method:
    name: str
    module: ModuleType

    @property
    def presets(self) -> list[str]:
        return list(self.module.PRESETS)

    @property
    def default_preset(self) -> str:
        return self.presets[0]

    def config(self, preset: str | None, dataset: str, ipc: int | None = None) -> MethodConfig:
        """The preset's config (None: the method's default preset) for this data set and IPC."""
        preset = preset or self.default_preset
        if preset not in self.module.PRESETS:
            raise DDError(f"unknown preset '{preset}' for {self.name}; known: {', '.join(self.presets)}")
        return self.module.PRESETS[preset](dataset, ipc)

    def prepare(self, data: RealDataset, config: MethodConfig, progress: bool = False) -> Preparation:
        """The method's work before distilling (PAD trains or finds its experts); nothing for most."""
        prepare = getattr(self.module, "prepare", None)
        return Preparation() if prepare is None else prepare(data, config, progress)


def _methods() -> dict[str, Method]:
    from ddcore.methods import datadam, pad, random_subset

    return {"datadam": Method("datadam", datadam), "pad": Method("pad", pad), "random": Method("random", random_subset)}


def list_methods() -> list[str]:
    return sorted(_methods())


def get_method(name: str) -> Method:
    methods = _methods()
    if name not in methods:
        raise DDError(f"unknown method '{name}'; known methods: {', '.join(list_methods())}")
    return methods[name]


__all__ = ["Callback", "Method", "MethodConfig", "Preparation", "StepReport", "get_method", "list_methods"]
