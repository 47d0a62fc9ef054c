"""A PNG written row strip by row strip, so a turned image never exists whole in memory.

Used for big PNG outputs (and 16-bit colour, which Pillow cannot write): the strips come
from ``geometry.rotate_image_strips``, each row is "Up"-filtered with numpy and
deflated as it arrives. ICC profile, DPI and EXIF are written as iCCP, pHYs and eXIf.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from typing import Any, BinaryIO

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Channels -> PNG colour type: grey, grey+alpha, RGB, RGBA.
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
IDAT_BYTES = 1 << 20


def _chunk(out: BinaryIO, kind: bytes, data: bytes) -> None:
    out.write(struct.pack(">I", len(data)) + kind + data)
    out.write(struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _metadata_chunks(out: BinaryIO, metadata: dict[str, Any]) -> None:
    if metadata.get("icc_profile"):
        _chunk(out, b"iCCP", b"ICC Profile\0\0" + zlib.compress(metadata["icc_profile"]))
    if metadata.get("dpi"):
        x, y = (round(v / 0.0254) for v in metadata["dpi"])  # dots per metre
        _chunk(out, b"pHYs", struct.pack(">IIB", x, y, 1))
    exif = metadata.get("exif")
    if exif:
        _chunk(out, b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif)


def write_png(out: BinaryIO, size: tuple[int, int], strips: Iterable[np.ndarray],
              metadata: dict[str, Any] | None = None, level: int = 3) -> None:
    """Write a PNG of ``size`` (w, h) from (rows, w[, C]) uint8 or uint16 strips, top to bottom."""
    width, height = size
    compressor = zlib.compressobj(level)
    pending = bytearray()
    previous: np.ndarray | None = None
    header_written = False
    rows_seen = 0
    for strip in strips:
        if strip.ndim == 2:
            strip = strip[:, :, None]
        if strip.shape[1] != width or strip.shape[2] not in COLOUR_TYPES:
            raise ValueError(f"strip of shape {strip.shape} does not fit a {width}-pixel-wide PNG")
        if not header_written:
            depth = 16 if strip.dtype == np.uint16 else 8
            if strip.dtype not in (np.uint8, np.uint16):
                raise ValueError(f"PNG holds 8 or 16 bits per sample, not {strip.dtype}")
            out.write(SIGNATURE)
            _chunk(out, b"IHDR", struct.pack(">IIBBBBB", width, height, depth,
                                             COLOUR_TYPES[strip.shape[2]], 0, 0, 0))
            _metadata_chunks(out, metadata or {})
            header_written = True
        # Big-endian bytes per row; the Up filter subtracts the row above, byte by byte.
        rows = strip.astype(">u2", copy=False) if depth == 16 else strip
        rows = np.ascontiguousarray(rows).view(np.uint8).reshape(strip.shape[0], -1)
        above = np.empty_like(rows)
        above[0] = previous if previous is not None else 0
        above[1:] = rows[:-1]
        filtered = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
        filtered[:, 0] = 2  # filter type Up
        np.subtract(rows, above, out=filtered[:, 1:])
        previous = rows[-1].copy()
        rows_seen += strip.shape[0]
        pending += compressor.compress(filtered.tobytes())
        while len(pending) >= IDAT_BYTES:
            _chunk(out, b"IDAT", bytes(pending[:IDAT_BYTES]))
            del pending[:IDAT_BYTES]
    if rows_seen != height:
        raise ValueError(f"PNG of {height} rows got {rows_seen}")
    pending += compressor.flush()
    for start in range(0, len(pending), IDAT_BYTES):
        _chunk(out, b"IDAT", bytes(pending[start:start + IDAT_BYTES]))
    _chunk(out, b"IEND", b"")
