"""A small reader for the IDX format of MNIST-style releases (gzipped or not).

We parse IDX ourselves instead of going through torchvision because redistributed copies (e.g.
Debian's `dataset-fashion-mnist`) are recompressed and fail torchvision's md5 checks, and because a
truncated download should be reported as such rather than as a reshape error.

Format: two zero bytes, a dtype code, the number of dimensions, then one big-endian uint32 per
dimension, then the data (big-endian) in row-major order.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ddcore.errors import DDError

GZIP_MAGIC = b"\x1f\x8b"

# IDX dtype code -> big-endian numpy dtype.
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> torch.Tensor:
    """Read an IDX file (gzip detected from its content) into a tensor shaped like its header.

    Raises `DDError` naming the file when it cannot be read, is not IDX, or is truncated.
    """
    path = Path(path)
    data = _read_bytes(path)
    dtype, dims, offset = _parse_header(path, data)
    count = math.prod(dims)
    expected = offset + count * dtype.itemsize
    if len(data) != expected:
        raise DDError(
            f"corrupt IDX file {path}: its header announces shape {tuple(dims)} ({expected} bytes) "
            f"but it holds {len(data)} bytes; delete it and fetch it again"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(dims)
    return torch.from_numpy(array.astype(dtype.newbyteorder("=")))  # copy to native byte order


def _read_bytes(path: Path) -> bytes:
    """The file's IDX bytes, decompressed when it is gzip."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == GZIP_MAGIC else raw
    except (OSError, EOFError, zlib.error) as error:  # missing, unreadable, or a damaged gzip stream
        raise DDError(f"cannot read IDX file {path}: {error}; delete it and fetch it again") from None


def _parse_header(path: Path, data: bytes) -> tuple[np.dtype, list[int], int]:
    """(dtype, dims, data offset) from the header, checked against the format."""
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise DDError(f"{path} is not an IDX file (bad magic number {data[:4].hex() or 'none'})")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise DDError(f"{path} is not a valid IDX file (unknown dtype code 0x{code:02x})")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DDError(f"corrupt IDX file {path}: truncated inside its {ndim}-dimension header")
    return IDX_DTYPES[code], list(struct.unpack(f">{ndim}I", data[4:offset])), offset
