"""Device choice and seeding, in one place."""
from __future__ import annotations

import random

import numpy as np
import torch

from ddcore.errors import DDError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` picks the GPU when one is visible (e.g. the one Ray assigned to a trial), else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.split(":")[0] not in DEVICE_CHOICES:
        raise DDError(f"unknown device '{device}'; use one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DDError(f"device '{device}' asked for but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that network initialisation is reproducible."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings measure the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
