"""Real data sets, by name: `load_dataset("mnist", data_root=...)`.

Each loader returns a `RealDataset` (normalised tensors in memory, indexed by class). Bad input
raises `DDError` with one line naming the file and the fix.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ddcore.data.base import RealDataset
from ddcore.errors import DDError

DATA_ROOT_ENV = "DDORCH_DATA_ROOT"
DEFAULT_DATA_ROOT = Path("~/.cache/ddorch/data")


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    """`--data-root` flag > `DDORCH_DATA_ROOT` env var > `~/.cache/ddorch/data`."""
    chosen = data_root or os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    return Path(chosen).expanduser().resolve()


def _loaders() -> dict[str, Callable[..., RealDataset]]:
    from ddcore.data.digits import load_digits
    from ddcore.data.mhist import load_mhist
    from ddcore.data.mnist import load_fashion_mnist, load_mnist

    return {"digits": load_digits, "mnist": load_mnist, "fashion_mnist": load_fashion_mnist, "mhist": load_mhist}


DATASETS = ("digits", "mnist", "fashion_mnist", "mhist")


def load_dataset(
    name: str,
    data_root: str | Path | None = None,
    image_size: int | None = None,
    download: bool = False,
) -> RealDataset:
    """Load a real data set by name; `image_size=None` keeps the data set's default size."""
    loaders = _loaders()
    if name not in loaders:
        raise DDError(f"unknown data set '{name}'; known data sets: {', '.join(DATASETS)}")
    return loaders[name](root=resolve_data_root(data_root), image_size=image_size, download=download)


__all__ = ["DATASETS", "RealDataset", "load_dataset", "resolve_data_root"]
