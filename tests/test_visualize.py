"""The all-classes grid MLflow and the report show: a row per class, in class order, named on its left."""

import numpy as np
import torch
from PIL import Image

from ddcore.synthetic import SyntheticSet
from ddcore.visualize import GRID_PADDING, class_grid, save_grids


def synthetic_set(names: list[str], ipc: int = 2) -> SyntheticSet:
    """8x8 grey images whose brightness is their class (shuffled), so rows can be read back."""
    labels = torch.arange(len(names)).repeat(ipc)[
        torch.randperm(len(names) * ipc, generator=torch.Generator().manual_seed(0))
    ]
    images = (0.2 + 0.3 * labels.float()).view(-1, 1, 1, 1).expand(-1, 1, 8, 8).clone()
    return SyntheticSet(images, labels, "toy", "random", names, (0.0,), (1.0,))


def test_rows_are_classes_in_order_and_named_on_the_left(tmp_path):
    names = ["cat", "dog", "zebra"]
    picture = np.asarray(class_grid(synthetic_set(names)).convert("L"), dtype=float)
    cell = 32 + GRID_PADDING  # 8 px upscaled to 32, plus the grid's padding
    assert picture.shape[0] == GRID_PADDING + len(names) * cell
    margin = picture.shape[1] - (GRID_PADDING + 2 * cell)  # two images per row
    assert margin > 10
    for row in range(len(names)):
        top = GRID_PADDING + row * cell
        band = picture[top : top + 32]
        assert np.allclose(
            band[:, margin + GRID_PADDING + 4 : margin + GRID_PADDING + 28], 255 * (0.2 + 0.3 * row), atol=1
        )
        assert (band[:, :margin] < 128).any()  # its name, in black on white
    with Image.open(save_grids(synthetic_set(names), tmp_path)[0]) as saved:  # the file MLflow logs is this grid
        assert saved.size == (picture.shape[1], picture.shape[0])


def test_longer_class_names_widen_the_label_margin():
    short = class_grid(synthetic_set(["a", "b"]))
    long = class_grid(synthetic_set(["a", "sweet pepper"]))
    assert long.height == short.height and long.width > short.width + 40
