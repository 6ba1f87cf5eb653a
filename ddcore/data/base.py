"""The in-memory real data set every other part of ddcore works on."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class RealDataset:
    """A labelled image data set held as normalised float tensors in memory.

    Dataset distillation samples per-class batches thousands of times, so the images are loaded
    once, normalised once, and indexed by class once (`class_indices`).
    """

    name: str
    train_images: torch.Tensor  # (N, C, H, W) float32, normalised with (mean, std)
    train_labels: torch.Tensor  # (N,) int64
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: list[str]
    mean: tuple[float, ...]  # per channel, used to normalise and to de-normalise grids
    std: tuple[float, ...]
    metadata: dict[str, torch.Tensor] = field(default_factory=dict)  # per-sample extras, e.g. MHIST annotator votes
    class_indices: list[torch.Tensor] = field(init=False)

    def __post_init__(self) -> None:
        self.class_indices = [torch.nonzero(self.train_labels == c, as_tuple=True)[0] for c in range(self.num_classes)]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_images.shape[-1]

    def class_counts(self, split: str = "train") -> list[int]:
        labels = self.train_labels if split == "train" else self.test_labels
        return torch.bincount(labels, minlength=self.num_classes).tolist()

    def images_of_class(self, c: int) -> torch.Tensor:
        return self.train_images[self.class_indices[c]]

    def sample_per_class(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Indices of `n` random train images of every class, shape (num_classes, n).

        Sampled with replacement only when a class holds fewer than `n` images.
        """
        rows = []
        for idx in self.class_indices:
            if len(idx) >= n:
                pick = torch.randperm(len(idx), generator=generator)[:n]
            else:
                pick = torch.randint(len(idx), (n,), generator=generator)
            rows.append(idx[pick])
        return torch.stack(rows)

    def sample_counts(self, counts: list[int], generator: torch.Generator | None = None) -> torch.Tensor:
        """Indices of `counts[c]` random train images of every class c, concatenated class by class.

        The random-real baseline of a synthetic set with these class sizes (DD-Ranking's idea:
        always compare with a random real subset of the same size).
        """
        picked = self.sample_per_class(max(counts), generator)
        return torch.cat([picked[c, :n] for c, n in enumerate(counts)])
