"""The embedded default data set: scikit-learn's bundled 8x8 handwritten digits (UCI optdigits).

1797 real images, values 0..16, always available without a download. A fixed stratified split
keeps 30% of every class (rounded) for testing: 1258 train / 539 test images, train class counts
[125, 127, 124, 128, 127, 127, 127, 125, 122, 126].

We read scikit-learn's bundled `digits.csv.gz` (the file `sklearn.datasets.load_digits` parses)
directly: importing `sklearn.datasets` alone takes over a second, and this loader must be instant
because README examples and quick tests use it. A test checks we read the same data as sklearn.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from ddcore.data.base import RealDataset
from ddcore.data.prep import normalised_dataset, resize, resolve_size
from ddcore.errors import DDError

NATIVE_SIZE = 8
MAX_VALUE = 16.0
TEST_FRACTION = 0.3
SPLIT_SEED = 0


def load_digits(root: Path | None = None, image_size: int | None = None, download: bool = False) -> RealDataset:
    """Digits as 1x8x8 images (or bilinearly resized); `root` and `download` are unused."""
    size = resolve_size(image_size, NATIVE_SIZE)
    images, labels = read_bundled_digits()
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    images = torch.from_numpy(images).float().div_(MAX_VALUE).view(-1, 1, NATIVE_SIZE, NATIVE_SIZE)
    labels = torch.from_numpy(labels)
    return normalised_dataset(
        "digits",
        resize(images[train_idx], size),
        labels[train_idx],
        resize(images[test_idx], size),
        labels[test_idx],
        [str(digit) for digit in range(10)],
    )


def bundled_digits_path() -> Path:
    """scikit-learn's `datasets/data/digits.csv.gz`, located without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DDError("the digits data set ships with scikit-learn, which is not installed: pip install scikit-learn")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


def read_bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """(pixels (1797, 64) in 0..16, labels (1797,) int64) from the bundled csv (64 pixels, label)."""
    path = bundled_digits_path()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    except (OSError, ValueError) as error:
        raise DDError(
            f"cannot read scikit-learn's bundled digits file {path}: {error}; reinstall scikit-learn"
        ) from None
    return table[:, :-1], table[:, -1]


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (train, test) indices holding `test_fraction` of every class (rounded) in test.

    Uses numpy's legacy `RandomState`, whose stream numpy keeps frozen, so the split never moves.
    """
    rng = np.random.RandomState(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = round(len(members) * test_fraction)
        test.append(members[:n_test])
        train.append(members[n_test:])
    return torch.from_numpy(np.sort(np.concatenate(train))), torch.from_numpy(np.sort(np.concatenate(test)))
