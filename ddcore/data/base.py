"""The in-memory real data set every other part of ddcore works on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ddcore.errors import DDError

VALIDATION_SEED = 0  # the validation split is drawn once, with this seed, for every run


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
    # Per-sample extras, e.g. MHIST annotator votes: of the training images, or of the test images when
    # the key starts with "test_".
    metadata: dict[str, torch.Tensor] = field(default_factory=dict)
    # The validation part `with_validation` held out of the training images (None: none held out),
    # and a digest of the training indices it took.
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    val_digest: str = ""
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

    @property
    def training_part(self) -> str:
        """The name of what networks learn from, for cache keys: the data set's name, plus the held-out
        split when there is one (a baseline or expert trained without it is another result)."""
        if self.val_labels is None:
            return self.name
        return f"{self.name}-without-val{len(self.val_labels)}-{self.val_digest}"

    def with_validation(self, size: int | None = None) -> RealDataset:
        """This data set with `size` training images (default: its `DatasetSpec.val_size`) moved into a
        validation part: stratified by class, drawn with `VALIDATION_SEED`. Everything that learns reads
        the training part, so the validation images stay unseen; `evaluate` scores them beside the test set.

        The normalisation statistics stay those of the whole training set (two numbers per channel)."""
        if self.val_labels is not None:
            return self
        if size is None:
            from ddcore.data import get_spec  # ddcore.data imports this module

            size = get_spec(self.name).val_size
        held = stratified_sample(self.train_labels, size, VALIDATION_SEED)
        keep = torch.ones(len(self.train_labels), dtype=torch.bool)
        keep[held] = False
        metadata = {k: v if k.startswith("test_") else v[keep] for k, v in self.metadata.items()}
        return replace(
            self,
            train_images=self.train_images[keep],
            train_labels=self.train_labels[keep],
            metadata=metadata,
            val_images=self.train_images[held],
            val_labels=self.train_labels[held],
            val_digest=index_digest(held),
        )

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


def stratified_sample(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Sorted indices of exactly `size` of `labels`, every class in proportion to its share (the largest
    remainders get the rounding), drawn with numpy's legacy `RandomState`, whose stream numpy keeps
    frozen: the same labels give the same indices forever."""
    counts = torch.bincount(labels).numpy()
    if not 0 < size < len(labels) - len(counts):
        raise DDError(f"a validation part of {size} images does not fit {len(labels)} training images")
    exact = counts * size / counts.sum()
    quota = np.floor(exact).astype(np.int64)
    quota[np.argsort(quota - exact, kind="stable")[: size - quota.sum()]] += 1
    rng = np.random.RandomState(seed)
    members = labels.numpy()
    picked = [rng.permutation(np.flatnonzero(members == c))[:n] for c, n in enumerate(quota)]
    return torch.from_numpy(np.sort(np.concatenate(picked)))


def index_digest(indices: torch.Tensor) -> str:
    """12 hex digits of the SHA-1 of the indices (little-endian int64): which images a split holds."""
    return hashlib.sha1(indices.numpy().astype("<i8").tobytes()).hexdigest()[:12]
