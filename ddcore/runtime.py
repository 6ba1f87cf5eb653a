"""Device choice, seeding, memory readings and atomic file writes, in one place."""

from __future__ import annotations

import random
import resource
import sys
from collections.abc import Callable
from pathlib import Path

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


def reset_peak_memory(device: torch.device) -> None:
    """Start a fresh GPU peak (the CPU peak of a process cannot be reset: see `peak_memory_mib`)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float:
    """GPU: the most memory tensors held since `reset_peak_memory`. CPU: the process's peak
    resident set size so far (getrusage maxrss; includes the data set and the libraries)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """`write(temporary)` then a rename onto `path`: a run killed midway never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    write(tmp)
    tmp.replace(path)
    return path
