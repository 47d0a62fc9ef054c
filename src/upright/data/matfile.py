"""A reader for numeric arrays in MATLAB 5 MAT-files (the Olivetti faces' format).

Enough of the format for plain numeric matrices, compressed or not, either byte order;
cells, structs, sparse, complex and v7.3 (HDF5) files are refused with a clear error.
Reading it here instead of through scipy keeps scipy out of the install: torchmetrics
imports scipy.signal whenever scipy is present, about 60 MB of every training process.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from upright.errors import UserError

_HEADER_BYTES = 128
MI_MATRIX, MI_COMPRESSED = 14, 15
# Data element types that hold numbers, and their numpy types (without byte order).
_ELEMENT_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8",
                  12: "i8", 13: "u8", 16: "u1"}
# mxArray classes that are numeric matrices (double, single, int8 ... uint64).
_NUMERIC_CLASSES = frozenset(range(6, 16))
_CLASS_NAMES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse"}
_COMPLEX_FLAG = 0x0800


class MatFileError(UserError, ValueError):
    """The bytes are not a MAT-file this reader can take."""


def _elements(data: bytes, order: str):
    """(type, payload) of each data element in ``data``."""
    offset = 0
    while offset + 8 <= len(data):
        first, second = struct.unpack_from(order + "II", data, offset)
        if first >> 16:  # small element: type and size in 4 bytes, data in the next 4
            kind, size = first & 0xFFFF, first >> 16
            if size > 4:
                raise MatFileError(f"small data element of {size} bytes (at most 4 fit)")
            yield kind, data[offset + 4:offset + 4 + size]
            offset += 8
            continue
        kind, size = first, second
        start = offset + 8
        if start + size > len(data):
            raise MatFileError(f"data element of {size} bytes runs past the end of the file")
        yield kind, data[start:start + size]
        # Elements are padded to 8 bytes, except compressed ones (written back to back).
        offset = start + size + ((-size) % 8 if kind != MI_COMPRESSED else 0)


def _matrix(payload: bytes, order: str) -> tuple[str, np.ndarray]:
    """Name and value of one miMATRIX element."""
    parts = list(_elements(payload, order))
    if len(parts) < 3:
        raise MatFileError("matrix element without flags, dimensions and name")
    flags = np.frombuffer(parts[0][1], order + "u4")
    array_class, complex_ = int(flags[0]) & 0xFF, bool(flags[0] & _COMPLEX_FLAG)
    name = parts[2][1].decode("ascii", errors="replace")
    if array_class not in _NUMERIC_CLASSES:
        kind = _CLASS_NAMES.get(array_class, f"class {array_class}")
        raise MatFileError(f"variable {name!r} is a {kind} array; only numeric matrices are read")
    if complex_:
        raise MatFileError(f"variable {name!r} is complex; only real matrices are read")
    if len(parts) < 4:
        raise MatFileError(f"variable {name!r} has no data")
    dims = tuple(int(d) for d in np.frombuffer(parts[1][1], order + "i4"))
    data_type, data = parts[3]
    if data_type not in _ELEMENT_TYPES:
        raise MatFileError(f"variable {name!r} stores its data as element type {data_type}")
    values = np.frombuffer(data, order + _ELEMENT_TYPES[data_type])
    if values.size != int(np.prod(dims)):
        raise MatFileError(f"variable {name!r} has {values.size} values for dimensions {dims}")
    # MATLAB stores column-major. The stored type may be narrower than the class (the
    # Olivetti faces are class double stored as uint8); like loadmat, keep the stored one.
    return name, values.reshape(dims, order="F")


def read_mat(raw: bytes) -> dict[str, np.ndarray]:
    """Every numeric variable of a MATLAB 5 MAT-file, by name: arrays of the stored type
    and shape, as ``scipy.io.loadmat`` gives them (it adds 2-D shape to vectors too)."""
    if len(raw) < _HEADER_BYTES:
        raise MatFileError(f"{len(raw)} bytes: too short for a MAT-file header")
    if raw[:6] != b"MATLAB":
        raise MatFileError("not a MAT-file (no 'MATLAB' header)")
    endian = raw[126:128]
    if endian not in (b"IM", b"MI"):
        raise MatFileError("MAT-file header has no byte-order mark (a v4 or damaged file?)")
    order = "<" if endian == b"IM" else ">"
    version = struct.unpack_from(order + "H", raw, 124)[0]
    if version != 0x0100:
        raise MatFileError(f"MAT-file version {version:#06x}; only version 5 files are read "
                           "(v7.3 files are HDF5)")
    out: dict[str, np.ndarray] = {}
    for kind, payload in _elements(raw[_HEADER_BYTES:], order):
        if kind == MI_COMPRESSED:
            try:
                payload = zlib.decompress(payload)
            except zlib.error as exc:
                raise MatFileError(f"compressed variable is damaged: {exc}") from exc
            inner = list(_elements(payload, order))
            if len(inner) != 1:
                raise MatFileError("compressed element does not hold exactly one variable")
            kind, payload = inner[0]
        if kind == MI_MATRIX:
            name, value = _matrix(payload, order)
            out[name] = value
    return out
