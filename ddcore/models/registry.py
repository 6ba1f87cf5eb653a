"""Model registry: one entry per network name (in the manner of timm's `_registry.py`).

It imports no network: `ddcore/models/__init__.py` imports each network module, which registers
its names here with `@register_model`. So importing `ddcore.models` fills the registry, and no
network module imports the package back.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

from torch import nn

from ddcore.errors import DDError
from ddcore.models.base import FeatureNet

ModelFactory = Callable[[int, int, int], FeatureNet]  # (channels, num_classes, image_size)
_REGISTRY: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    def add(factory: ModelFactory) -> ModelFactory:
        _REGISTRY[name] = factory
        return factory

    return add


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_model(name: str, channels: int, num_classes: int, image_size: int) -> FeatureNet:
    if name not in _REGISTRY:
        raise DDError(f"unknown model '{name}'; known models: {', '.join(list_models())}")
    return _REGISTRY[name](channels, num_classes, image_size)


def reinitialize(model: nn.Module) -> nn.Module:
    """Draw every parameter anew, in place, as a newly built network would: each layer's own
    `reset_parameters` (batch norm's also resets its running statistics), in module order.

    Seeded the same way, a ConvNet comes out bit-identical to a newly built one (its layers are built
    in module order); any network comes out with the same distribution. On a GPU the draws stay on
    the device, so a method that wants a fresh random network every iteration (DataDAM, DM) does no
    host work that grows with the model.
    """
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


@functools.lru_cache(maxsize=128)
def architecture_fingerprint(name: str, channels: int, num_classes: int, image_size: int) -> str:
    """A short hash of the network's layer list: cache keys change whenever the architecture does."""
    return hashlib.sha1(repr(get_model(name, channels, num_classes, image_size)).encode()).hexdigest()[:8]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
