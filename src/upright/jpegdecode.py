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


# Warnings that leave every pixel decoded: a few padding bytes before a marker (some
# cameras pad the last scan), scan parameters a baseline decoder ignores, a progression
# whose order a decoder tolerates. (More than a few stray bytes is lost data.)
_HARMLESS = (re.compile(r"Corrupt JPEG data: ([0-9]+) extraneous bytes before marker"),
             re.compile(r"Invalid SOS parameters for sequential JPEG"),
             re.compile(r"Inconsistent progression sequence"))
_MAX_PADDING = 16


def _harmless(message: str) -> bool:
    for pattern in _HARMLESS:
        found = pattern.search(message)
        if found:
            return not found.groups() or int(found.group(1)) <= _MAX_PADDING
    return False


def decode_jpeg(data: np.ndarray | bytes, grey: bool, scale: int, height: int, width: int) -> np.ndarray:
    """``data`` decoded at the DCT reduction ``scale`` (1, 2, 4 or 8) to (height, width)
    grey or (height, width, 3) RGB; JpegDamage where libjpeg found the data damaged,
    JpegNotForTurbo for a header TurboJPEG does not take."""
    colourspace = "GRAY" if grey else "RGB"
    options = {"min_height": height, "min_width": width, "min_factor": scale} if scale > 1 else {}
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace=colourspace, strict=True, **options)
    except ValueError as exc:
        message = str(exc).strip()
        if message.startswith("tjDecompressHeader"):
            raise JpegNotForTurbo(message) from None
        if not _harmless(message):
            raise JpegDamage(message) from None
        pixels = simplejpeg.decode_jpeg(data, colorspace=colourspace, strict=False, **options)
    if pixels.shape[:2] != (height, width):
        raise JpegDamage(f"decoded to {pixels.shape[1]}x{pixels.shape[0]}, not {width}x{height}")
    return pixels[:, :, 0] if grey else pixels
