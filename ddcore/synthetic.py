"""The distilled artefact: a synthetic set with everything needed to train on it and to look at it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ddcore.errors import DDError
from ddcore.runtime import write_atomically

if TYPE_CHECKING:
    from ddcore.data.base import RealDataset


@dataclass
class SyntheticSet:
    """Images (normalised like the real data), labels (class indices or soft), and provenance.

    Saved as a plain dict of tensors and primitives so that `torch.load(weights_only=True)` can
    read it back without executing code.
    """

    images: torch.Tensor  # (N, C, H, W)
    labels: torch.Tensor  # (N,) int64, or (N, num_classes) float for soft labels
    dataset: str
    method: str
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    config: dict[str, Any] = field(default_factory=dict)  # JSON-like: str, int, float, bool, lists
    learned_lr: float | None = None  # a learned evaluation learning rate (PAD/DATM), if any

    @classmethod
    def of(
        cls,
        data: RealDataset,
        images: torch.Tensor,
        labels: torch.Tensor,
        method: str,
        config: dict[str, Any],
        learned_lr: float | None = None,
    ) -> SyntheticSet:
        """A set distilled from `data`: its name, class names and normalisation come from there (CPU copies)."""
        return cls(
            images.detach().cpu().clone(),
            labels.detach().cpu(),
            data.name,
            method,
            data.class_names,
            data.mean,
            data.std,
            config,
            learned_lr,
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def ipc(self) -> int:
        return len(self.images) // self.num_classes

    def hard_labels(self) -> torch.Tensor:
        return self.labels if self.labels.dim() == 1 else self.labels.argmax(dim=1)

    def check_matches(self, data: RealDataset) -> None:
        """One-line error unless the set has `data`'s classes and image shape (it trains networks tested on `data`)."""
        if self.num_classes != data.num_classes or tuple(self.images.shape[1:]) != (
            data.channels,
            data.image_size,
            data.image_size,
        ):
            raise DDError(
                f"synthetic set ({self.dataset}, {self.num_classes} classes, images {tuple(self.images.shape[1:])}) does not "
                f"match data set {data.name} ({data.num_classes} classes, {data.channels}x{data.image_size}x{data.image_size})"
            )

    def denormalised(self) -> torch.Tensor:
        """Images back in [0, 1] pixel space, for pictures."""
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (self.images.detach().cpu().float() * std + mean).clamp(0, 1)

    def save(self, path: str | Path) -> Path:
        """Write atomically (`write_atomically`): a killed run never leaves a half file."""
        payload = {
            "images": self.images.detach().cpu(),
            "labels": self.labels.detach().cpu(),
            "dataset": self.dataset,
            "method": self.method,
            "class_names": list(self.class_names),
            "mean": list(self.mean),
            "std": list(self.std),
            "config": self.config,
            "learned_lr": self.learned_lr,
        }
        return write_atomically(Path(path), lambda tmp: torch.save(payload, tmp))

    @classmethod
    def load(cls, path: str | Path) -> SyntheticSet:
        path = Path(path)
        if not path.is_file():
            raise DDError(f"synthetic set file not found: {path}")
        try:
            payload = torch.load(path, weights_only=True, map_location="cpu")
            payload["mean"], payload["std"] = tuple(payload["mean"]), tuple(payload["std"])
            synthetic = cls(**payload)
        except Exception as error:  # pickle/zip errors, missing or unknown keys come in many types
            raise DDError(f"cannot read synthetic set {path}: {error}") from None
        synthetic.validate(str(path))
        return synthetic

    def validate(self, where: str) -> None:
        """One-line errors for a set no network should train on: shapes, dtypes, label range, finite values."""
        images, labels, classes = self.images, self.labels, self.num_classes
        problem = None
        if images.dim() != 4 or not images.is_floating_point():
            problem = f"images must be a float (N, C, H, W) tensor, got {tuple(images.shape)} of {images.dtype}"
        elif len(self.mean) != images.shape[1] or len(self.std) != images.shape[1]:
            problem = f"mean/std have {len(self.mean)}/{len(self.std)} channels, the images {images.shape[1]}"
        elif not torch.isfinite(images).all():
            problem = "images hold NaN or infinite values"
        elif labels.shape[0] != images.shape[0]:
            problem = f"{labels.shape[0]} labels for {images.shape[0]} images"
        elif labels.dim() == 1 and (labels.is_floating_point() or labels.min() < 0 or labels.max() >= classes):
            problem = f"labels must be class indices in 0..{classes - 1}"
        elif labels.dim() == 2 and (labels.shape[1] != classes or not torch.isfinite(labels).all()):
            problem = f"soft labels must be finite, {classes} per image"
        elif labels.dim() not in (1, 2):
            problem = f"labels must be (N,) or (N, {classes}), got {tuple(labels.shape)}"
        if problem:
            raise DDError(f"synthetic set {where}: {problem}")
