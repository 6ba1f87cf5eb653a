"""Real data sets, by name: `load_dataset("mnist", data_root=...)`.

Each loader returns a `RealDataset` (normalised tensors in memory, indexed by class). Bad input
raises `DDError` with one line naming the file and the fix.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ddcore.errors import DDError

if TYPE_CHECKING:  # the table and the names stay importable without torch (a fast `ddorch --help`)
    from ddcore.data.base import RealDataset

DATA_ROOT_ENV = "DDORCH_DATA_ROOT"
DEFAULT_DATA_ROOT = Path("~/.cache/ddorch/data")


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    """`--data-root` flag > `DDORCH_DATA_ROOT` env var > `~/.cache/ddorch/data`."""
    chosen = data_root or os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    return Path(chosen).expanduser().resolve()


def given_data_root(data_root: str | Path | None = None) -> str | None:
    """The data root the user chose (`--data-root`, else `DDORCH_DATA_ROOT`), absolute; None for the default.

    What a driver hands its trials: on another machine None means that machine's own default."""
    chosen = data_root or os.environ.get(DATA_ROOT_ENV)
    return str(resolve_data_root(chosen)) if chosen else None


# DSA strategies (Zhao & Bilen 2021). The DSA readme (VICO-UoE/DatasetCondensation) recommends
# color_crop_cutout_scale_rotate for MNIST and SVHN and adds flip for FashionMNIST and CIFAR: a
# mirrored digit is not the same digit. Its code and DataDAM's do not enforce it (DataDAM's script
# default, with flip, applies to MNIST too); we follow the readme.
DSA_NO_FLIP = "color_crop_cutout_scale_rotate"
DSA_ALL = "color_crop_cutout_flip_scale_rotate"


@dataclass(frozen=True)
class DatasetSpec:
    """Facts about one data set that the rest of ddcore reads instead of branching on its name.

    Adding a data set = one loader function + one `DATASETS` entry.
    """

    loader: str  # "module:function(root, image_size, download) -> RealDataset", imported on first use
    channels: int
    image_size: int  # native size (a run may resize)
    num_classes: int
    model: str  # default network to distil with (and to evaluate on)
    dsa_strategy: str
    full_data_batch: int  # batch of the full-data baseline (see ddcore.baseline)
    eval_protocol: str  # default evaluation protocol of synthetic sets (ddcore.evaluate)
    about: str
    val_size: int  # training images held out for validation (`RealDataset.with_validation`, --selection val)


# Small data sets get full-data batches of 32: with 256, MHIST's 2175 images give 170 SGD steps in
# 20 epochs and ConvNetD7 never leaves the majority class (63.15 %; 80.8 % with 32), and digits'
# 1258 images give 100 steps (91.8 %; 98.9 % with 32). Measured: benchmarks/RESULTS.md.
DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        "ddcore.data.digits:load_digits",
        1,
        8,
        10,
        "ConvNetD3",
        DSA_NO_FLIP,
        32,
        "dc",
        "scikit-learn's bundled 8x8 handwritten digits (no download)",
        252,  # a fifth of its 1,258 training images
    ),
    "mnist": DatasetSpec(
        "ddcore.data.mnist:load_mnist",
        1,
        28,
        10,
        "ConvNetD3",
        DSA_NO_FLIP,
        256,
        "dc",
        "MNIST handwritten digits, 60,000 / 10,000",
        5000,
    ),
    "fashion_mnist": DatasetSpec(
        "ddcore.data.mnist:load_fashion_mnist",
        1,
        28,
        10,
        "ConvNetD3",
        DSA_ALL,
        256,
        "dc",
        "Fashion-MNIST clothing, 60,000 / 10,000",
        5000,
    ),
    "mhist": DatasetSpec(
        "ddcore.data.mhist:load_mhist",
        3,
        128,
        2,
        "ConvNetD7",
        DSA_ALL,
        32,
        "dc",
        "MHIST colorectal polyps (HP vs SSA) at 128 px, 2,175 / 977",
        435,  # a fifth of its training images
    ),
}
DATASET_NAMES = ", ".join(DATASETS)  # for help texts and messages


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DDError(f"unknown data set '{name}'; known data sets: {DATASET_NAMES}")
    return DATASETS[name]


def load_dataset(
    name: str,
    data_root: str | Path | None = None,
    image_size: int | None = None,
    download: bool = False,
) -> RealDataset:
    """Load a real data set by name; `image_size=None` keeps the data set's default size."""
    module, function = get_spec(name).loader.split(":")
    loader: Callable[..., RealDataset] = getattr(importlib.import_module(module), function)
    return loader(root=resolve_data_root(data_root), image_size=image_size, download=download)


def dataset_status(name: str, data_root: str | Path | None = None) -> tuple[bool, str]:
    """(found, what was found: sizes and classes; or why not) for one data set under the data root."""
    try:
        data = load_dataset(name, data_root)
    except DDError as error:
        return False, f"not found: {error}"
    return True, f"{len(data.train_labels)} train / {len(data.test_labels)} test, {data.num_classes} classes"


__all__ = [
    "DATASETS",
    "DATASET_NAMES",
    "DatasetSpec",
    "dataset_status",
    "get_spec",
    "load_dataset",
    "given_data_root",
    "resolve_data_root",
]
