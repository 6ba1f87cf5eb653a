"""The full-data baseline: a network trained on the whole real training set (the upper-bound row).

Results are cached on disk by (data set, image size, model, protocol, seed) so that every later
command (DataDAM runs, sweeps, the lossless-IPC search) compares against the same numbers without
retraining.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from ddcore.data.base import RealDataset
from ddcore.evaluate import FULL_DATA, EvalProtocol, EvalResult, SeedRun, count_flops, train_and_test
from ddcore.models import get_model
from ddcore.runtime import resolve_device

CACHE_ENV = "DDORCH_CACHE_DIR"


def cache_dir() -> Path:
    """`DDORCH_CACHE_DIR` or `~/.cache/ddorch`."""
    return Path(os.environ.get(CACHE_ENV, "~/.cache/ddorch")).expanduser()


def _cache_file(data: RealDataset, model_name: str, protocol: EvalProtocol, seed: int) -> Path:
    key = f"{data.name}-{data.image_size}px_{model_name}_{protocol.name}_seed{seed}.json"
    return cache_dir() / "baselines" / key


def full_data_baseline(
    data: RealDataset,
    model_name: str,
    seeds: tuple[int, ...] = (0,),
    protocol: EvalProtocol = FULL_DATA,
    device: str | torch.device = "auto",
    refresh: bool = False,
    progress: bool = False,
) -> tuple[EvalResult, list[bool]]:
    """Train `model_name` on all real training images once per seed, reusing cached seeds.

    Returns the result and, per seed, whether it came from the cache.
    """
    device = resolve_device(device)
    model = get_model(model_name, data.channels, data.num_classes, data.image_size)
    result = EvalResult(model_name, protocol.name, count_flops(model, data.channels, data.image_size))
    from_cache = []
    for seed in seeds:
        path = _cache_file(data, model_name, protocol, seed)
        if path.exists() and not refresh:
            result.runs.append(SeedRun(**json.loads(path.read_text())["run"]))
            from_cache.append(True)
            continue
        run = train_and_test(
            model_name, data.train_images, data.train_labels, data, protocol, seed, device, progress=progress
        )
        _write_atomically(path, {"run": asdict(run), "device": str(device), "torch": torch.__version__})
        result.runs.append(run)
        from_cache.append(False)
    return result, from_cache


def _write_atomically(path: Path, payload: dict) -> None:
    """Write to a temporary name then rename, so a killed run never leaves a half-written cache entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)
