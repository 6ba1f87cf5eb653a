"""Distillation methods by name: `get_method("datadam").distill(data, config)`.

Each method is one module that registers a `Method` with `@register_method` (see `base.py`); the
registry imports no method, this package imports each method module (in the manner of timm).
"""

from ddcore.methods import datadam, pad, random_subset  # noqa: E402, F401  (each registers itself)
from ddcore.methods.base import (
    Callback,
    Cost,
    DistillRun,
    Method,
    MethodConfig,
    Preparation,
    StepReport,
    get_method,
    list_methods,
    register_method,
)

__all__ = [
    "Callback",
    "Cost",
    "DistillRun",
    "Method",
    "MethodConfig",
    "Preparation",
    "StepReport",
    "get_method",
    "list_methods",
    "register_method",
]
