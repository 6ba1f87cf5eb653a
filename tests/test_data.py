"""Real-data loaders: IDX parsing, MNIST/Fashion-MNIST, MHIST and digits.

Everything runs on tiny generated files, except the real-data checks at the end, which use the
shared data folder beside the repository (skipped when it is absent).
"""

from __future__ import annotations

import csv
import gzip
import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ddcore.data import DATASETS, digits, get_spec, load_dataset, mnist
from ddcore.data.idx import read_idx
from ddcore.data.mhist import COLUMNS, MHIST_URL, load_mhist
from ddcore.data.mnist import FASHION_CLASSES, IDX_FILES, load_fashion_mnist, load_mnist
from ddcore.errors import DDError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IDX_CODES = {
    np.dtype("u1"): 0x08,
    np.dtype("i1"): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
}


# ---------------------------------------------------------------------------------------- IDX


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write `array` as an IDX file (gzipped when `gz`), the way the MNIST releases are stored."""
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    header = bytes([0, 0, IDX_CODES[big_endian.dtype], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + big_endian.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-7, 0, 1_000_000], dtype=np.int32),
        np.array([[-2, 300], [5, -32000]], dtype=np.int16),
        np.array([[0.5, -1.25, 3.0]], dtype=np.float32),
    ],
    ids=["uint8-3d", "int32-1d", "int16-2d", "float32-2d"],
)
def test_read_idx_round_trip(tmp_path: Path, array: np.ndarray, gz: bool) -> None:
    tensor = read_idx(write_idx(tmp_path / "x.idx", array, gz))
    assert tensor.shape == array.shape
    assert tensor.dtype == torch.from_numpy(array).dtype
    assert torch.equal(tensor, torch.from_numpy(array))


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_read_idx_truncated_file_names_the_file(tmp_path: Path, gz: bool) -> None:
    full = write_idx(tmp_path / "full", np.zeros((10, 28, 28), np.uint8)).read_bytes()
    cut = full[:-100]
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(cut) if gz else cut)
    with pytest.raises(DDError, match=r"corrupt IDX file .*train-images-idx3-ubyte.*\(10, 28, 28\)"):
        read_idx(path)


def test_read_idx_truncated_gzip_stream(tmp_path: Path) -> None:
    data = gzip.compress(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    path = tmp_path / "labels.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DDError, match=r"cannot read IDX file .*labels\.gz"):
        read_idx(path)


def test_read_idx_rejects_trailing_bytes_bad_magic_and_dtype(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "extra", np.zeros(4, np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DDError, match=r"corrupt IDX file .*extra.*holds 13 bytes"):
        read_idx(path)
    (tmp_path / "magic").write_bytes(b"\x01\x02\x08\x01" + bytes(8))
    with pytest.raises(DDError, match=r"magic.* is not an IDX file \(bad magic number 01020801\)"):
        read_idx(tmp_path / "magic")
    (tmp_path / "dtype").write_bytes(b"\x00\x00\x0a\x01" + (1).to_bytes(4, "big") + b"\x00")
    with pytest.raises(DDError, match=r"dtype.*unknown dtype code 0x0a"):
        read_idx(tmp_path / "dtype")


# ------------------------------------------------------------------------- MNIST / Fashion


def write_idx_release(folder: Path, gz: bool = True, n_train: int = 50, n_test: int = 20) -> dict[str, np.ndarray]:
    """The four MNIST files with random content in `folder`; returns what was written."""
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        write_idx(folder / (f"{stem}.gz" if gz else stem), array, gz)
    return arrays


@pytest.fixture
def no_debian_fashion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide this machine's /usr/share/datasets/fashion-mnist so tests see only their own files."""
    monkeypatch.setattr(mnist, "DEBIAN_FASHION_DIR", tmp_path / "no-debian-copy")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_load_mnist_tiny_release(tmp_path: Path, gz: bool) -> None:
    written = write_idx_release(tmp_path / "MNIST" / "raw", gz)
    data = load_mnist(tmp_path)
    assert data.name == "mnist" and data.class_names == [str(d) for d in range(10)]
    assert data.train_images.shape == (50, 1, 28, 28) and data.test_images.shape == (20, 1, 28, 28)
    assert data.train_images.dtype == torch.float32
    assert torch.equal(data.train_labels, torch.from_numpy(written["train-labels-idx1-ubyte"]).long())
    assert torch.equal(data.test_labels, torch.from_numpy(written["t10k-labels-idx1-ubyte"]).long())
    # Train split normalised to zero mean, unit std; the stored stats are those of the [0, 1] images.
    assert abs(data.train_images.mean().item()) < 1e-5 and abs(data.train_images.std(correction=0).item() - 1) < 1e-5
    train_unit = torch.from_numpy(written["train-images-idx3-ubyte"]).float() / 255
    assert data.mean == pytest.approx((train_unit.mean().item(),), abs=1e-6)
    assert data.std == pytest.approx((train_unit.std(correction=0).item(),), abs=1e-6)
    # The test split uses the train statistics, so de-normalising gives back its pixels.
    test_unit = torch.from_numpy(written["t10k-images-idx3-ubyte"]).float().unsqueeze(1) / 255
    assert torch.allclose(data.test_images * data.std[0] + data.mean[0], test_unit, atol=1e-5)


def test_load_mnist_resizes_with_antialiased_bilinear(tmp_path: Path) -> None:
    written = write_idx_release(tmp_path / "MNIST" / "raw")
    data = load_mnist(tmp_path, image_size=14)
    assert data.train_images.shape == (50, 1, 14, 14) and data.test_images.shape == (20, 1, 14, 14)
    unit = torch.from_numpy(written["train-images-idx3-ubyte"]).float().unsqueeze(1) / 255
    expected = F.interpolate(unit, size=(14, 14), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(data.train_images * data.std[0] + data.mean[0], expected, atol=1e-5)
    assert abs(data.train_images.mean().item()) < 1e-5
    assert load_mnist(tmp_path, image_size=32).train_images.shape == (50, 1, 32, 32)


def test_load_fashion_mnist_from_torchvision_layout(tmp_path: Path, no_debian_fashion: None) -> None:
    write_idx_release(tmp_path / "FashionMNIST" / "raw")
    data = load_dataset("fashion_mnist", data_root=tmp_path)
    assert data.name == "fashion_mnist" and data.class_names == list(FASHION_CLASSES)
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"
    assert data.train_images.shape == (50, 1, 28, 28)


def test_load_fashion_mnist_falls_back_to_debian_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    debian_dir = tmp_path / "usr-share-datasets-fashion-mnist"
    written = write_idx_release(debian_dir, n_train=30)
    monkeypatch.setattr(mnist, "DEBIAN_FASHION_DIR", debian_dir)
    data = load_fashion_mnist(tmp_path / "empty-root")
    assert torch.equal(data.train_labels, torch.from_numpy(written["train-labels-idx1-ubyte"]).long())


def test_missing_mnist_names_expected_files_folder_and_fixes(tmp_path: Path) -> None:
    with pytest.raises(DDError, match=r"^MNIST not found: expected train-images-idx3-ubyte\[\.gz\]") as error:
        load_mnist(tmp_path)
    message = str(error.value)
    for stem in IDX_FILES:
        assert f"{stem}[.gz]" in message
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "--download" in message and "--data-root" in message and "DDORCH_DATA_ROOT" in message
    assert "\n" not in message


def test_partial_mnist_folder_counts_as_missing(tmp_path: Path) -> None:
    folder = tmp_path / "MNIST" / "raw"
    write_idx_release(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DDError, match="MNIST not found: expected .*t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def test_missing_fashion_mnist_lists_both_folders_and_apt(tmp_path: Path, no_debian_fashion: None) -> None:
    with pytest.raises(DDError, match=r"^Fashion-MNIST not found") as error:
        load_fashion_mnist(tmp_path)
    message = str(error.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert str(mnist.DEBIAN_FASHION_DIR) in message
    assert "apt-get install dataset-fashion-mnist" in message and "--download" in message


def test_download_goes_through_torchvision_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    calls = []

    class FakeMNIST:
        """Stands in for torchvision's downloader: writes the files where torchvision would."""

        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, download))
            write_idx_release(Path(root) / "MNIST" / "raw")

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    with pytest.raises(DDError, match="MNIST not found"):
        load_mnist(tmp_path, download=False)
    assert calls == []
    assert load_mnist(tmp_path, download=True).train_images.shape == (50, 1, 28, 28)
    assert calls == [(str(tmp_path), True)]


def test_mnist_label_count_mismatch_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "MNIST" / "raw"
    write_idx_release(folder)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(49, np.uint8), gz=True)
    with pytest.raises(DDError, match=r"train-labels-idx1-ubyte\.gz holds \(49,\) labels for 50 images"):
        load_mnist(tmp_path)


# ------------------------------------------------------------------------------------ MHIST

# (image, label, SSA votes, partition): 4 train (HP, SSA, HP, SSA) and 2 test (SSA, HP).
MHIST_ROWS = [
    ("MHIST_aaa.png", "HP", "0", "train"),
    ("MHIST_aab.png", "SSA", "6", "train"),
    ("MHIST_aac.png", "HP", "2", "train"),
    ("MHIST_aad.png", "SSA", "7", "train"),
    ("MHIST_aae.png", "SSA", "5", "test"),
    ("MHIST_aaf.png", "HP", "1", "test"),
]


def png_bytes(name: str) -> tuple[bytes, np.ndarray]:
    """A tiny PNG and its RGB pixels; one image is larger and one greyscale, to exercise resizing and mode conversion."""
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "MHIST_aac.png":
        image = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    elif name == "MHIST_aaf.png":
        image = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), mode="L")
    else:
        image = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), np.array(image.convert("RGB"))


def write_mhist(
    root: Path, layout: str = "folder", rows: list[tuple[str, ...]] = MHIST_ROWS, header: tuple[str, ...] = COLUMNS
) -> Path:
    """A tiny MHIST release under root/mhist: images in images/, or in images.zip (top level or images/)."""
    folder = root / "mhist"
    folder.mkdir(parents=True)
    with open(folder / "annotations.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    names = [row[0] for row in MHIST_ROWS]
    if layout == "folder":
        (folder / "images").mkdir()
        for name in names:
            (folder / "images" / name).write_bytes(png_bytes(name)[0])
    else:
        prefix = "images/" if layout == "zip-images" else ""
        with zipfile.ZipFile(folder / "images.zip", "w") as archive:
            for name in names:
                archive.writestr(prefix + name, png_bytes(name)[0])
            archive.writestr("__MACOSX/images/._MHIST_aaa.png", b"not an image")  # must be ignored
    return folder


@pytest.mark.parametrize("layout", ["folder", "zip-top", "zip-images"])
def test_load_mhist_tiny_release(tmp_path: Path, layout: str) -> None:
    write_mhist(tmp_path, layout)
    data = load_mhist(tmp_path, image_size=8)
    assert data.name == "mhist" and data.class_names == ["HP", "SSA"]
    assert data.train_images.shape == (4, 3, 8, 8) and data.test_images.shape == (2, 3, 8, 8)
    assert data.train_labels.tolist() == [0, 1, 0, 1] and data.test_labels.tolist() == [1, 0]
    assert data.metadata["ssa_votes"].tolist() == [0, 6, 2, 7]
    assert data.metadata["test_ssa_votes"].tolist() == [5, 1]
    assert data.metadata["ssa_votes"].dtype == torch.int64
    per_channel = data.train_images.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(per_channel.mean(dim=1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(per_channel.std(dim=1, correction=0), torch.ones(3), atol=1e-5)
    # An 8x8 RGB file is kept pixel for pixel: de-normalising gives back its values.
    mean, std = torch.tensor(data.mean).view(3, 1, 1), torch.tensor(data.std).view(3, 1, 1)
    expected = torch.from_numpy(png_bytes("MHIST_aab.png")[1]).permute(2, 0, 1).float() / 255
    assert torch.allclose(data.train_images[1] * std + mean, expected, atol=1e-5)
    # The greyscale test image became RGB with equal channels.
    grey = data.test_images[1] * std + mean
    assert torch.allclose(grey[0], grey[1], atol=1e-5) and torch.allclose(grey[1], grey[2], atol=1e-5)


def test_load_mhist_default_size_is_128(tmp_path: Path) -> None:
    write_mhist(tmp_path)
    data = load_dataset("mhist", data_root=tmp_path)
    assert data.train_images.shape == (4, 3, 128, 128) and data.test_images.shape == (2, 3, 128, 128)


def test_mhist_missing_release_points_to_the_authors(tmp_path: Path) -> None:
    with pytest.raises(DDError, match=r"missing annotations\.csv and images/ \(or images\.zip\)") as error:
        load_mhist(tmp_path)
    message = str(error.value)
    assert MHIST_URL in message and "research-use agreement" in message
    assert str(tmp_path / "mhist") in message and "--data-root" in message


def test_mhist_missing_annotations_only(tmp_path: Path) -> None:
    (write_mhist(tmp_path) / "annotations.csv").unlink()
    with pytest.raises(DDError, match=r"missing annotations\.csv in .*https://bmirds\.github\.io/MHIST/"):
        load_mhist(tmp_path)


def test_mhist_missing_images_only(tmp_path: Path) -> None:
    folder = write_mhist(tmp_path, "zip-top")
    (folder / "images.zip").unlink()
    with pytest.raises(DDError, match=r"missing images/ \(or images\.zip\) in .*bmirds"):
        load_mhist(tmp_path)


def test_mhist_csv_without_expected_columns(tmp_path: Path) -> None:
    header = ("Image Name", "Label", "Number of Annotators who Selected SSA (Out of 7)", "Split")
    write_mhist(tmp_path, header=header)
    with pytest.raises(DDError, match=r"annotations\.csv lacks column\(s\) 'Majority Vote Label', 'Partition'$"):
        load_mhist(tmp_path)


@pytest.mark.parametrize(
    "bad_row, pattern",
    [
        (("MHIST_aac.png", "TA", "2", "train"), r"annotations\.csv line 4: unknown Majority Vote Label 'TA'"),
        (("MHIST_aac.png", "HP", "2", "val"), r"annotations\.csv line 4: unknown Partition 'val'"),
        (("MHIST_aac.png", "HP", "9", "train"), r"annotations\.csv line 4: .* must be 0\.\.7, got '9'"),
        (("MHIST_aac.png", "HP"), r"annotations\.csv line 4: unknown Partition ''"),
    ],
    ids=["label", "partition", "votes", "short-row"],
)
def test_mhist_bad_csv_value_names_its_line(tmp_path: Path, bad_row: tuple[str, ...], pattern: str) -> None:
    rows = list(MHIST_ROWS)
    rows[2] = bad_row  # third data row = csv line 4
    write_mhist(tmp_path, rows=rows)
    with pytest.raises(DDError, match=pattern):
        load_mhist(tmp_path)


@pytest.mark.parametrize("layout", ["folder", "zip-images"])
def test_mhist_listed_image_missing(tmp_path: Path, layout: str) -> None:
    write_mhist(tmp_path, layout, rows=MHIST_ROWS + [("MHIST_zzz.png", "HP", "0", "test")])
    with pytest.raises(
        DDError, match=r"MHIST image 'MHIST_zzz\.png' \(annotations\.csv line 8\) is missing from .*images"
    ):
        load_mhist(tmp_path)


def test_mhist_unreadable_image_is_named(tmp_path: Path) -> None:
    folder = write_mhist(tmp_path)
    (folder / "images" / "MHIST_aad.png").write_bytes(b"\x89PNG this is not really a png")
    with pytest.raises(DDError, match=r"cannot read MHIST image .*images/MHIST_aad\.png"):
        load_mhist(tmp_path)


# ----------------------------------------------------------------------------------- digits


def test_digits_counts_shapes_and_normalisation() -> None:
    start = time.perf_counter()
    data = load_dataset("digits")
    assert time.perf_counter() - start < 1.0  # the embedded default must feel instant
    assert data.train_images.shape == (1258, 1, 8, 8) and data.test_images.shape == (539, 1, 8, 8)
    assert data.class_counts("train") == [125, 127, 124, 128, 127, 127, 127, 125, 122, 126]
    assert data.class_counts("test") == [53, 55, 53, 55, 54, 55, 54, 54, 52, 54]
    assert data.class_names == [str(d) for d in range(10)]
    assert abs(data.train_images.mean().item()) < 1e-5 and abs(data.train_images.std(correction=0).item() - 1) < 1e-4


def test_digits_are_sklearn_digits() -> None:
    from sklearn.datasets import load_digits as sklearn_load_digits

    pixels, labels = digits.read_bundled_digits()
    reference = sklearn_load_digits()
    assert np.array_equal(pixels, reference.data) and np.array_equal(labels, reference.target)


def test_digits_split_is_fixed_stratified_and_disjoint() -> None:
    first, second = load_dataset("digits"), load_dataset("digits")
    assert torch.equal(first.train_images, second.train_images) and torch.equal(first.test_labels, second.test_labels)
    _, labels = digits.read_bundled_digits()
    train, test = digits.stratified_split(labels, 0.3, seed=0)
    assert sorted(train.tolist() + test.tolist()) == list(range(len(labels)))
    assert train[:20].tolist() != digits.stratified_split(labels, 0.3, seed=1)[0][:20].tolist()


def test_digits_upsampling_and_bad_size() -> None:
    data = load_dataset("digits", image_size=16)
    assert data.train_images.shape == (1258, 1, 16, 16) and data.test_images.shape == (539, 1, 16, 16)
    assert abs(data.train_images.mean().item()) < 1e-5
    with pytest.raises(DDError, match="--image-size must be a positive"):
        load_dataset("digits", image_size=0)


# -------------------------------------------------------------------------------- real data

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.skipif(
    not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason=f"real MNIST not found in {SHARED_DATA}/MNIST/raw"
)
def test_real_mnist() -> None:
    data = load_mnist(SHARED_DATA)
    assert data.train_images.shape == (60_000, 1, 28, 28) and data.test_images.shape == (10_000, 1, 28, 28)
    assert data.class_counts("train") == MNIST_TRAIN_COUNTS and data.class_counts("test") == MNIST_TEST_COUNTS
    assert data.mean == pytest.approx((0.1307,), abs=1e-4) and data.std == pytest.approx((0.3081,), abs=1e-4)


@pytest.mark.skipif(
    not mnist.DEBIAN_FASHION_DIR.is_dir(),
    reason=f"{mnist.DEBIAN_FASHION_DIR} absent (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist_from_debian_package(tmp_path: Path) -> None:
    data = load_fashion_mnist(tmp_path)  # nothing under the root: the Debian copy is found
    assert data.train_images.shape == (60_000, 1, 28, 28) and data.test_images.shape == (10_000, 1, 28, 28)
    assert data.class_counts("train") == [6000] * 10 and data.class_counts("test") == [1000] * 10


@pytest.mark.skipif(not (SHARED_DATA / "mhist").is_dir(), reason=f"real MHIST not found in {SHARED_DATA}/mhist")
def test_real_mhist() -> None:
    data = load_mhist(SHARED_DATA)
    assert data.train_images.shape == (2175, 3, 128, 128) and data.test_images.shape == (977, 3, 128, 128)
    assert data.class_counts("train") == [1545, 630] and data.class_counts("test") == [617, 360]
    assert len(data.metadata["ssa_votes"]) == 2175 and len(data.metadata["test_ssa_votes"]) == 977
    # Majority vote of 7: SSA exactly when at least 4 pathologists chose it.
    assert torch.equal(data.metadata["ssa_votes"] >= 4, data.train_labels == 1)


def test_every_data_set_matches_its_table_row():
    # The DatasetSpec row is what presets, baselines and DSA read: it must describe the loaded data.
    data = load_dataset("digits")
    spec = get_spec("digits")
    assert (spec.channels, spec.image_size, spec.num_classes) == (data.channels, data.image_size, data.num_classes)
    assert set(DATASETS) == {"digits", "mnist", "fashion_mnist", "mhist"}
    assert get_spec("mhist").model == "ConvNetD7" and get_spec("mnist").full_data_batch == 256
    with pytest.raises(DDError, match="unknown data set 'cifar'; known data sets: digits, mnist, fashion_mnist, mhist"):
        get_spec("cifar")
