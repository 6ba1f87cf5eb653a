"""MHIST colorectal polyp patches (HP vs SSA) from the authors' release layout.

`<root>/mhist/annotations.csv` lists every image with its majority label, how many of the 7
pathologists voted SSA, and its partition; the PNGs sit in `<root>/mhist/images/` or in
`<root>/mhist/images.zip` (at the zip's top level or under `images/`). MHIST cannot be downloaded
automatically: its authors distribute it under a research-use agreement.
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

from ddcore.data.base import RealDataset
from ddcore.data.prep import normalised_dataset, resolve_size
from ddcore.errors import DDError

NATIVE_SIZE = 128
CLASS_NAMES = ["HP", "SSA"]  # label 0 = HP (hyperplastic polyp), 1 = SSA (sessile serrated adenoma)
PARTITIONS = ("train", "test")
NUM_ANNOTATORS = 7
IMAGE_COL = "Image Name"
LABEL_COL = "Majority Vote Label"
VOTES_COL = "Number of Annotators who Selected SSA (Out of 7)"
PARTITION_COL = "Partition"
COLUMNS = (IMAGE_COL, LABEL_COL, VOTES_COL, PARTITION_COL)
MHIST_URL = "https://bmirds.github.io/MHIST/"


@dataclass(frozen=True)
class Annotation:
    """One csv row, kept with its line number for error messages."""

    line: int
    image: str
    label: int
    ssa_votes: int
    train: bool


def load_mhist(root: Path, image_size: int | None = None, download: bool = False) -> RealDataset:
    """MHIST as 3xSxS RGB tensors (S = 128 unless asked), with the SSA vote counts as metadata.

    `download` exists only for the common loader signature: MHIST must be requested from its authors.
    """
    size = resolve_size(image_size, NATIVE_SIZE)
    folder = root / "mhist"
    _check_release(folder)
    rows = read_annotations(folder / "annotations.csv")
    train_rows = [row for row in rows if row.train]
    test_rows = [row for row in rows if not row.train]
    if not train_rows:
        raise DDError(f"{folder / 'annotations.csv'} lists no image in the train partition")
    return normalised_dataset(
        "mhist",
        _decode_all(_read_image_files(folder, train_rows), size),
        _column(train_rows, "label"),
        _decode_all(_read_image_files(folder, test_rows), size),
        _column(test_rows, "label"),
        list(CLASS_NAMES),
        metadata={"ssa_votes": _column(train_rows, "ssa_votes"), "test_ssa_votes": _column(test_rows, "ssa_votes")},
    )


def _column(rows: list[Annotation], field: str) -> torch.Tensor:
    return torch.tensor([getattr(row, field) for row in rows], dtype=torch.int64)


def _check_release(folder: Path) -> None:
    """Say exactly which part of the release is missing, and how to get MHIST."""
    missing = []
    if not (folder / "annotations.csv").is_file():
        missing.append("annotations.csv")
    if not (folder / "images").is_dir() and not (folder / "images.zip").is_file():
        missing.append("images/ (or images.zip)")
    if missing:
        raise DDError(
            f"MHIST not found: missing {' and '.join(missing)} in {folder}; MHIST is distributed by its "
            f"authors under a research-use agreement at {MHIST_URL} (no automatic download), so request it, "
            f"unpack it as {folder}/annotations.csv + images/ and point --data-root (or DDORCH_DATA_ROOT) at {folder.parent}"
        )


def read_annotations(csv_path: Path) -> list[Annotation]:
    """All rows of annotations.csv, validated; errors name the csv line."""
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise DDError(f"{csv_path} lacks column(s) {', '.join(repr(c) for c in missing)}")
        return [_parse_row(csv_path, reader.line_num, row) for row in reader]


def _parse_row(csv_path: Path, line: int, row: dict[str, str | None]) -> Annotation:
    # csv leaves the fields of a short row as None.
    name, label, votes, partition = ((row[column] or "").strip() for column in COLUMNS)
    where = f"{csv_path} line {line}"
    if label not in CLASS_NAMES:
        raise DDError(f"{where}: unknown {LABEL_COL} {label!r} (expected HP or SSA)")
    if partition not in PARTITIONS:
        raise DDError(f"{where}: unknown {PARTITION_COL} {partition!r} (expected train or test)")
    if not votes.isdecimal() or int(votes) > NUM_ANNOTATORS:
        raise DDError(f"{where}: {VOTES_COL} must be 0..{NUM_ANNOTATORS}, got {votes!r}")
    return Annotation(line, name, CLASS_NAMES.index(label), int(votes), partition == "train")


def _read_image_files(folder: Path, rows: list[Annotation]) -> list[tuple[str, bytes]]:
    """(display name, encoded bytes) of every listed image, from images/ or else images.zip."""
    images_dir = folder / "images"
    if images_dir.is_dir():
        _check_listed(rows, set(os.listdir(images_dir)), images_dir)
        return [(str(images_dir / row.image), _read_file(images_dir / row.image)) for row in rows]
    zip_path = folder / "images.zip"
    try:
        with zipfile.ZipFile(zip_path) as archive:
            entries = _zip_entries(archive)
            _check_listed(rows, set(entries), zip_path)
            return [(f"{zip_path}:{entries[row.image]}", archive.read(entries[row.image])) for row in rows]
    except (zipfile.BadZipFile, OSError) as error:
        raise DDError(f"cannot read {zip_path}: {error}") from None


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise DDError(f"cannot read MHIST image {path}: {error}") from None


def _zip_entries(archive: zipfile.ZipFile) -> dict[str, str]:
    """File name -> zip entry, for images at the top level or under images/ (nothing else)."""
    entries = {}
    for name in archive.namelist():
        path = PurePosixPath(name)
        if str(path.parent) in (".", "images") and not name.endswith("/"):
            entries[path.name] = name
    return entries


def _check_listed(rows: list[Annotation], present: set[str], where: Path) -> None:
    for row in rows:
        if row.image not in present:
            raise DDError(f"MHIST image {row.image!r} (annotations.csv line {row.line}) is missing from {where}")


def _decode_all(files: list[tuple[str, bytes]], size: int) -> torch.Tensor:
    """Decode the PNGs on a thread pool (PIL releases the GIL) into (N, 3, size, size) floats in [0, 1]."""
    pixels = np.empty((len(files), size, size, 3), dtype=np.uint8)

    def decode_into(index: int) -> None:
        pixels[index] = _decode(*files[index], size)

    with ThreadPoolExecutor() as pool:
        list(pool.map(decode_into, range(len(files))))  # list() re-raises a worker's DDError
    channels_first = torch.from_numpy(pixels).permute(0, 3, 1, 2)
    return channels_first.to(torch.float32, memory_format=torch.contiguous_format).div_(255)


def _decode(name: str, data: bytes, size: int) -> np.ndarray:
    """One image as (size, size, 3) uint8 RGB, bicubic-resized only when its size differs."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        if image.mode != "RGB":
            image = image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DDError(f"cannot read MHIST image {name}: {error}") from None
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image)
