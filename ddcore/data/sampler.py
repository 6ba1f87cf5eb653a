"""Per-class real batches drawn on the images' device, for the loops that draw one every iteration.

`RealDataset.sample_per_class` draws with a host generator, one `randperm` per class, and the
indices then travel to the device: per iteration that is `classes` host RNG calls and a copy the
GPU waits for. Here the class index table lives on the device once, and each draw is one
`torch.rand(classes, width)` on a device generator, sorted row-wise: the first `n` positions of a
row's random keys are `n` distinct images of the class, uniformly (a random permutation's prefix).
"""

from __future__ import annotations

import torch


class ClassBatchSampler:
    """`n` random train indices of every class, class-major, drawn on `device` from `seed`.

    Same seed, same device -> same batches. Distinct images within a class; with replacement
    only for a class that holds fewer than `n` (as `sample_per_class`).
    """

    def __init__(self, class_indices: list[torch.Tensor], n: int, device: torch.device, seed: int):
        sizes = torch.tensor([len(idx) for idx in class_indices])
        width = int(sizes.max())
        table = torch.zeros(len(class_indices), width, dtype=torch.long)
        for row, idx in zip(table, class_indices):
            row[: len(idx)] = idx
        self.n = n
        self.table = table.to(device)
        self.sizes = sizes.to(device)
        # Padding keys sort after every real key (rand < 1), so a row's first positions are real images.
        self.padding = (torch.arange(width) >= sizes.unsqueeze(1)).to(device)
        self.short = (sizes < n).to(device).unsqueeze(1)  # classes sampled with replacement
        self.any_short = bool((sizes < n).any())  # decided on the host once: no device sync per draw
        self.generator = torch.Generator(device).manual_seed(seed)

    def sample(self) -> torch.Tensor:
        """(classes * n,) indices into the train images, on the device; no host RNG, no copy."""
        classes, width = self.table.shape
        positions = self._distinct(classes, width) if width >= self.n else None
        if self.any_short:
            keys = torch.rand(classes, self.n, generator=self.generator, device=self.table.device)
            repeated = (keys * self.sizes.unsqueeze(1)).long()
            positions = repeated if positions is None else torch.where(self.short, repeated, positions)
        return self.table.gather(1, positions).flatten()

    def _distinct(self, classes: int, width: int) -> torch.Tensor:
        keys = torch.rand(classes, width, generator=self.generator, device=self.table.device)
        return keys.masked_fill(self.padding, 2.0).argsort(dim=1)[:, : self.n]
