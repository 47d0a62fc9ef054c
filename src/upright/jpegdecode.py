"""JPEG decoding that says when the data is damaged.

libjpeg meets damage inside a scan (bytes lost or overwritten, a truncated file, a
marker where none may be) as a warning: it prints a line on stderr, without the file's
name, and fills what it could not decode with grey or garbage, which OpenCV and Pillow
both return as if nothing were wrong. TurboJPEG through simplejpeg (the same libjpeg-turbo,
the GIL released, DCT scaling, identical pixels) hands the warning back instead, so a
damaged file fails with its name. A few warnings leave the pixels whole and are common in
files from real encoders; those decode as before.
"""

from __future__ import annotations

import re

import numpy as np
import simplejpeg


class JpegDamage(ValueError):
    """libjpeg's own words on why the file's pixels cannot be trusted."""


class JpegNotForTurbo(ValueError):
    """A header TurboJPEG's API does not take (an unusual chroma subsampling) though
    libjpeg may: for another decoder to judge."""


# Warnings that leave every pixel decoded: a JFIF version this libjpeg does not know, stray
# bytes between the header's segments (before a table, frame or APP segment, which come
# before any scan data), and a few padding bytes before the end marker (some cameras pad
# the last scan). Stray bytes before a marker that may follow a scan (DHT, SOS, DRI, ...)
# are lost data, and so is more than a few before the end. A warning that names a
# damaged scan header or progression is damage too: the pixels it hides are not decoded.
_JFIF_REVISION = re.compile(r"unknown JFIF revision number")
_EXTRANEOUS = re.compile(r"Corrupt JPEG data: ([0-9]+) extraneous bytes before marker 0x([0-9a-f]{2})")
_HEADER_MARKERS = {0xDB, 0xC0, 0xC1, 0xC2, 0xE0, 0xE1, 0xE2, 0xED, 0xEE, 0xFE}
_MAX_PADDING = 16


def _harmless(message: str) -> bool:
    if _JFIF_REVISION.search(message):
        return True
    found = _EXTRANEOUS.search(message)
    if not found:
        return False
    count, marker = int(found.group(1)), int(found.group(2), 16)
    return marker in _HEADER_MARKERS or (marker == 0xD9 and count <= _MAX_PADDING)


def decode_jpeg(data: np.ndarray | bytes, grey: bool, scale: int, height: int, width: int) -> np.ndarray:
    """``data`` decoded at the DCT reduction ``scale`` (1, 2, 4 or 8) to (height, width)
    grey or (height, width, 3) RGB; JpegDamage where libjpeg found the data damaged,
    JpegNotForTurbo for a header TurboJPEG does not take."""
    pixels = _decode(data, "GRAY" if grey else "RGB", scale, height, width)
    return pixels[:, :, 0] if grey else pixels


def check_jpeg(data: np.ndarray | bytes, colourspace: str, height: int | None = None,
               width: int | None = None) -> None:
    """JpegDamage where libjpeg finds the data of a JPEG (``colourspace``: CMYK, say, whose
    pixels another decoder gives) damaged, JpegNotForTurbo where TurboJPEG cannot judge.
    Decoded at 1/8 and dropped: every coefficient is still entropy-decoded, and that is
    where damage shows, but the pixels take 1/64 of the memory. Without a size, the frame's
    own size is not checked."""
    if height is None or width is None:
        _decode(data, colourspace, 8, None, None)
    else:
        _decode(data, colourspace, 8, -(-height // 8), -(-width // 8))


def _decode(data: np.ndarray | bytes, colourspace: str, scale: int, height: int | None,
            width: int | None) -> np.ndarray:
    options = {"min_height": height or 1, "min_width": width or 1, "min_factor": scale} if scale > 1 else {}
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace=colourspace, strict=True, **options)
    except ValueError as exc:
        message = str(exc).strip()
        if message.startswith("tjDecompressHeader"):
            raise JpegNotForTurbo(message) from None
        if not _harmless(message):
            raise JpegDamage(message) from None
        try:  # (the first warning is what strict mode reports; a second one hides behind it)
            pixels = simplejpeg.decode_jpeg(data, colorspace=colourspace, strict=False, **options)
        except ValueError as again:  # TurboJPEG gives up on it even so: Pillow's to judge
            raise JpegNotForTurbo(str(again).strip()) from None
    if height is not None and pixels.shape[:2] != (height, width):
        raise JpegDamage(f"decoded to {pixels.shape[1]}x{pixels.shape[0]}, not {width}x{height}")
    return pixels
