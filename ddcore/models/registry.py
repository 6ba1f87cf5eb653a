"""Model registry: one entry per network name."""
from __future__ import annotations

import functools
import hashlib
from typing import Callable

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


def _ensure_loaded() -> None:
    # Importing the modules runs their @register_model decorators.
    from ddcore.models import alexnet, convnet, lenet, mlp, resnet, vgg  # noqa: F401


def list_models() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_model(name: str, channels: int, num_classes: int, image_size: int) -> FeatureNet:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise DDError(f"unknown model '{name}'; known models: {', '.join(list_models())}")
    return _REGISTRY[name](channels, num_classes, image_size)


@functools.lru_cache(maxsize=128)
def architecture_fingerprint(name: str, channels: int, num_classes: int, image_size: int) -> str:
    """A short hash of the network's layer list: cache keys change whenever the architecture does."""
    return hashlib.sha1(repr(get_model(name, channels, num_classes, image_size)).encode()).hexdigest()[:8]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
