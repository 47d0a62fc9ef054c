"""JPEG encoding that lets other threads run: the bytes Pillow writes, made by OpenCV.

Pillow's JPEG encoder holds the GIL while it compresses, so the threads of ``correct``
encode one image at a time and stall the others' Python between their C calls. OpenCV
calls the same libjpeg-turbo with the same settings (quality tables, 4:2:0 for colour,
baseline, no optimisation) with the GIL released, and its bytes after the JFIF header
are Pillow's. The metadata Pillow would write (DPI in the JFIF header, EXIF in APP1, the
ICC profile in APP2 chunks) is put in the same places here, so the file is Pillow's byte
for byte (tests/test_jpegencode.py). Anything this does not cover returns None and is
left to Pillow.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

_SOI = b"\xff\xd8"
# What OpenCV writes first: SOI, then a 16-byte JFIF 1.01 APP0 (units 0, density 1:1, no thumbnail).
_JFIF_HEAD = _SOI + b"\xff\xe0\x00\x10JFIF\x00\x01\x01"
_JFIF_DEFAULT_DENSITY = b"\x00\x00\x01\x00\x01\x00\x00"
_JFIF_END = len(_JFIF_HEAD) + len(_JFIF_DEFAULT_DENSITY)
_MAX_SEGMENT = 0xFFFF - 2  # a marker segment's payload (its 2-byte length counts itself)
_ICC_HEAD = b"ICC_PROFILE\x00"
_ICC_CHUNK = _MAX_SEGMENT - len(_ICC_HEAD) - 2  # less the sequence number and the count


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def _density(dpi: Any) -> bytes | None:
    """The JFIF units and densities Pillow writes for ``dpi`` (rounded to whole dots per
    inch); None where Pillow would do something else (no usable value)."""
    if dpi is None:
        return _JFIF_DEFAULT_DENSITY
    try:
        x, y = (round(float(v)) for v in dpi)
    except (TypeError, ValueError):
        return None
    if not (1 <= x <= 0xFFFF and 1 <= y <= 0xFFFF):
        return None
    return b"\x01" + x.to_bytes(2, "big") + y.to_bytes(2, "big") + b"\x00\x00"


def _icc_segments(profile: bytes) -> bytes | None:
    chunks = [profile[i:i + _ICC_CHUNK] for i in range(0, len(profile), _ICC_CHUNK)]
    if len(chunks) > 255:  # the count is one byte
        return None
    return b"".join(_segment(0xE2, _ICC_HEAD + bytes((n, len(chunks))) + chunk)
                    for n, chunk in enumerate(chunks, 1))


def encode_jpeg(pixels: np.ndarray, quality: int, metadata: dict[str, Any]) -> bytes | None:
    """``pixels`` (uint8 grey (H, W) or RGB (H, W, 3)) as Pillow would save them as a JPEG
    at ``quality`` with ``metadata`` (``icc_profile``, ``dpi``, ``exif`` as ``Exif.tobytes()``
    gives it); None for anything else (other metadata, other arrays, what Pillow refuses)."""
    if set(metadata) - {"icc_profile", "dpi", "exif"} or pixels.dtype != np.uint8:
        return None
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)) or 0 in pixels.shape:
        return None
    density = _density(metadata.get("dpi"))
    exif = metadata.get("exif") or b""
    icc = metadata.get("icc_profile") or b""
    if density is None or not isinstance(exif, bytes) or not isinstance(icc, bytes):
        return None
    if exif and (not exif.startswith(b"Exif\x00\x00") or len(exif) > _MAX_SEGMENT):
        return None  # Pillow adds the prefix itself, or refuses EXIF over one segment
    icc_segments = _icc_segments(icc) if icc else b""
    if icc_segments is None:
        return None
    source = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".jpg", source, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    data = buffer.tobytes() if ok else b""
    if not data.startswith(_JFIF_HEAD) or data[len(_JFIF_HEAD):_JFIF_END] != _JFIF_DEFAULT_DENSITY:
        return None  # an OpenCV that writes another header: Pillow's bytes are the reference
    app1 = _segment(0xE1, exif) if exif else b""
    return data[:len(_JFIF_HEAD)] + density + app1 + icc_segments + data[_JFIF_END:]
