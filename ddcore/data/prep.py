"""The steps every loader ends with: pick the size, resize, normalise with train statistics.

Loaders hand over float images in [0, 1]; statistics are taken after resizing so that the stored
`mean`/`std` describe exactly the tensors the models see (and de-normalise them exactly).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ddcore.data.base import RealDataset
from ddcore.errors import DDError


def resolve_size(image_size: int | None, default: int) -> int:
    """The requested square size, or the data set's own when none was asked for."""
    if image_size is None:
        return default
    if image_size < 1:
        raise DDError(f"--image-size must be a positive number of pixels, got {image_size}")
    return image_size


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of (N, C, H, W) images to (N, C, size, size); antialiased when shrinking."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def normalised_dataset(
    name: str,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    class_names: list[str],
    metadata: dict[str, torch.Tensor] | None = None,
) -> RealDataset:
    """Normalise both splits with the train split's per-channel mean/std and wrap them.

    The image tensors are normalised in place: loaders hand over fresh tensors, and MNIST or MHIST
    in float32 are large enough that copies cost seconds of page faults.
    """
    # Population std (correction=0) so the normalised train split has exactly unit std.
    std, mean = torch.std_mean(train_images, dim=(0, 2, 3), correction=0)
    shape = (1, -1, 1, 1)
    for images in (train_images, test_images):
        images.sub_(mean.view(shape)).div_(std.view(shape))
    return RealDataset(
        name=name,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        class_names=class_names,
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
        metadata=metadata or {},
    )
