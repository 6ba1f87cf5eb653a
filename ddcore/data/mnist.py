"""MNIST and Fashion-MNIST from their four IDX files, through one shared code path.

Files are looked for in torchvision's layout (`<root>/MNIST/raw`, `<root>/FashionMNIST/raw`) and,
for Fashion-MNIST, in the folder Debian's `dataset-fashion-mnist` package installs. They are parsed
with our own IDX reader, so recompressed copies work; torchvision is only used to download.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ddcore.data.base import RealDataset
from ddcore.data.idx import read_idx
from ddcore.data.prep import normalised_dataset, resize, resolve_size
from ddcore.errors import DDError

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
NATIVE_SIZE = 28
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class IdxRelease:
    """What differs between MNIST-style releases; everything else is shared."""

    name: str  # RealDataset.name
    title: str  # for messages
    torchvision_class: str  # also the folder name under the data root, as torchvision lays it out
    class_names: tuple[str, ...]
    debian_package: str | None = None  # installs the files flat into DEBIAN_FASHION_DIR


MNIST = IdxRelease("mnist", "MNIST", "MNIST", tuple("0123456789"))
FASHION_MNIST = IdxRelease(
    "fashion_mnist", "Fashion-MNIST", "FashionMNIST", FASHION_CLASSES, debian_package="dataset-fashion-mnist"
)


def load_mnist(root: Path, image_size: int | None = None, download: bool = False) -> RealDataset:
    """MNIST: 60,000 train / 10,000 test handwritten digits, 1x28x28."""
    return load_idx_release(MNIST, root, image_size, download)


def load_fashion_mnist(root: Path, image_size: int | None = None, download: bool = False) -> RealDataset:
    """Fashion-MNIST: 60,000 train / 10,000 test clothing images, 1x28x28."""
    return load_idx_release(FASHION_MNIST, root, image_size, download)


def load_idx_release(release: IdxRelease, root: Path, image_size: int | None, download: bool) -> RealDataset:
    """Find (or download) the release's files, parse them, resize, normalise with train stats."""
    size = resolve_size(image_size, NATIVE_SIZE)
    files = _find_files(release, root)
    if files is None and download:
        _download(release, root)
        files = _find_files(release, root)
    if files is None:
        raise DDError(_missing_message(release, root))
    train_images, train_labels = _read_split(files, "train", release)
    test_images, test_labels = _read_split(files, "t10k", release)
    return normalised_dataset(
        release.name,
        resize(train_images, size),
        train_labels,
        resize(test_images, size),
        test_labels,
        list(release.class_names),
    )


def candidate_folders(release: IdxRelease, root: Path) -> list[Path]:
    """Where the files may be, in order of preference."""
    folders = [root / release.torchvision_class / "raw"]
    if release.debian_package:
        folders.append(DEBIAN_FASHION_DIR)
    return folders


def _find_file(folder: Path, stem: str) -> Path | None:
    """The uncompressed file (faster to read) if present, else its `.gz`."""
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def _find_files(release: IdxRelease, root: Path) -> dict[str, Path] | None:
    """File stem -> path, from the first candidate folder that holds all four files."""
    for folder in candidate_folders(release, root):
        files = {stem: _find_file(folder, stem) for stem in IDX_FILES}
        if all(files.values()):
            return files
    return None


def _missing_message(release: IdxRelease, root: Path) -> str:
    files = ", ".join(f"{stem}[.gz]" for stem in IDX_FILES)
    folders = " or ".join(str(folder) for folder in candidate_folders(release, root))
    fixes = [
        "pass --download to fetch it",
        f"point --data-root (or DDORCH_DATA_ROOT) at the folder holding {release.torchvision_class}/raw",
    ]
    if release.debian_package:
        fixes.append(f"run `apt-get install {release.debian_package}`")
    return f"{release.title} not found: expected {files} in {folders}; {', '.join(fixes[:-1])}, or {fixes[-1]}"


def _download(release: IdxRelease, root: Path) -> None:
    """Let torchvision fetch the files into `<root>/<Class>/raw` (needs internet)."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, release.torchvision_class)
    try:
        dataset_class(str(root), train=True, download=True)
    except Exception as error:  # network and mirror failures come in many types
        raise DDError(f"downloading {release.title} into {root} failed: {error}") from None


def _read_split(files: dict[str, Path], prefix: str, release: IdxRelease) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 1, 28, 28) float in [0, 1], labels (N,) int64) of one split, checked for sense."""
    images_path = files[f"{prefix}-images-idx3-ubyte"]
    labels_path = files[f"{prefix}-labels-idx1-ubyte"]
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != torch.uint8 or images.shape[1:] != (NATIVE_SIZE, NATIVE_SIZE):
        raise DDError(f"{images_path} holds {images.dtype} {tuple(images.shape)}, expected uint8 (N, 28, 28) images")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DDError(f"{labels_path} holds {tuple(labels.shape)} labels for {len(images)} images in {images_path}")
    num_classes = len(release.class_names)
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
        raise DDError(f"{labels_path} holds labels outside 0..{num_classes - 1}")
    return images.unsqueeze(1).float().div_(255), labels.long()
