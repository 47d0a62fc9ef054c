"""MNIST from its four IDX gzip files."""

from __future__ import annotations

import gzip
import struct

import numpy as np

from upright.data.mirror import fetch
from upright.data.source import SourceData

# Tried in order; the original host often refuses robots, the others mirror it.
MNIST_BASE_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

# sha256 of the decompressed IDX bytes (the .gz wrappers differ between mirrors).
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# Digits that look like themselves (or each other) when turned upside down.
DEFAULT_EXCLUDED_DIGITS = (0, 1, 6, 8)


def parse_idx(data: bytes) -> np.ndarray:
    """Parse an (uncompressed) IDX file into a numpy array."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError("not an IDX file (bad magic number)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code not in _IDX_DTYPES:
        raise ValueError(f"unknown IDX data type 0x{dtype_code:02x}")
    dtype = _IDX_DTYPES[dtype_code]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError("truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"IDX body has {len(data) - header} bytes, dimensions {dims} need {expected}")
    # No copy for bytes (uint8 images): a view of ``data`` instead of a second 47 MB array.
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(
        dtype.newbyteorder("="), copy=False)


def _decode_gz_idx(raw: bytes) -> tuple[np.ndarray, bytes]:
    content = gzip.decompress(raw)
    return parse_idx(content), content


def load_mnist_file(filename: str) -> np.ndarray:
    """One of the four MNIST files, fetched (mirror, cache or download) and verified."""
    urls = [base + filename for base in MNIST_BASE_URLS]
    return fetch("mnist", filename, urls, MNIST_FILES[filename], _decode_gz_idx,
                 all_files=list(MNIST_FILES))


def load_mnist() -> SourceData:
    """All 70,000 MNIST digits; the canonical 10,000 test images are marked as test."""
    train_x = load_mnist_file("train-images-idx3-ubyte.gz")
    train_y = load_mnist_file("train-labels-idx1-ubyte.gz")
    test_x = load_mnist_file("t10k-images-idx3-ubyte.gz")
    test_y = load_mnist_file("t10k-labels-idx1-ubyte.gz")
    return SourceData(
        name="mnist",
        images=np.concatenate([train_x, test_x]),
        groups=np.concatenate([train_y, test_y]).astype(np.int64),
        is_test=np.concatenate([np.zeros(len(train_x), bool), np.ones(len(test_x), bool)]),
        group_kind="digit",
        default_excluded_groups=DEFAULT_EXCLUDED_DIGITS,
    )
