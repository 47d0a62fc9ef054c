"""A PNG's chunk stream checked before it is decoded.

Every PNG's chunks are checked (their CRCs, no critical chunk libpng does not know, a
palette where the image needs one): Pillow passes an image chunk's bad CRC and leaves a
palette image without its palette black. Where OpenCV decodes (16-bit colour and big
PNGs, straight into an array upright allocates) the image data is inflated too, in bounded
pieces, and must fill exactly the rows the header promises: OpenCV's ``imread`` into a
given array drops libpng's verdict, so a file libpng gives up on comes back as that
array, uninitialised, and libpng's complaint goes to stderr without the file's name.
OpenCV is then given the pixel chunks alone (``copy_pixel_chunks``), so libpng has no
ancillary chunk to complain of either.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_KNOWN_CRITICAL = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}  # by colour type
_PIECE = 1 << 20
EXTRA_DATA = "more image data than its rows"  # harmless to Pillow; libpng warns on stderr


def _name(kind: bytes) -> str:
    return kind.decode("ascii", "backslashreplace")


def image_data_bytes(width: int, height: int, depth: int, colour: int, interlace: int) -> int:
    """The inflated size of a PNG's image data: every pass's rows with their filter bytes."""
    channels = _CHANNELS.get(colour, 4)

    def rows(w: int, h: int) -> int:
        return h * (1 + (w * channels * depth + 7) // 8) if w and h else 0

    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    return sum(rows(max(0, -(-(width - x) // dx)), max(0, -(-(height - y) // dy)))
               for x, y, dx, dy in passes)


def png_stream_problem(path: str | Path, extra_data_ok: bool = True, inflate_data: bool = True) -> str | None:
    """What is wrong with the PNG at ``path`` (a phrase for an error message), or None.
    ``extra_data_ok``: image data beyond the rows (which Pillow ignores and libpng warns of,
    on stderr) is no problem; else it is EXTRA_DATA. ``inflate_data`` False: the chunks
    alone (their CRCs and kinds), not whether the image data fills the rows (a third of a
    decode's time)."""
    with open(path, "rb") as f:
        if f.read(8) != SIGNATURE:
            return "not a PNG signature"
        inflate, expected, got, seen_idat, idat_done = zlib.decompressobj(), None, 0, False, False
        palette_needed = seen_palette = False
        while True:
            header = f.read(8)
            if len(header) < 8:
                return "truncated before its end chunk"
            length, kind = struct.unpack(">I4s", header)
            if length > 0x7FFFFFFF:
                return f"a {kind!r} chunk's length is over the PNG limit"
            if kind[0:1].isupper() and kind not in _KNOWN_CRITICAL:
                return f"an unknown critical chunk {_name(kind)!r}"
            if expected is None and kind != b"IHDR":
                return "its first chunk is not the header"
            crc, left, first = zlib.crc32(kind), length, b""
            while left:
                piece = f.read(min(left, _PIECE))
                if not piece:
                    return f"truncated inside its {_name(kind)} chunk"
                left -= len(piece)
                crc = zlib.crc32(piece, crc)
                if kind == b"IHDR" and not first:
                    first = piece
                if kind == b"IDAT":
                    if palette_needed and not seen_palette:
                        return "a palette image without its palette"
                    if idat_done:
                        return "its image data is split by other chunks"
                    if not inflate_data:
                        continue
                    if got > expected and not extra_data_ok:
                        return EXTRA_DATA
                    try:  # (past the rows the rest is only read for its CRC: no bomb inflated)
                        while piece and got <= expected:
                            got += len(inflate.decompress(piece, _PIECE))
                            piece = inflate.unconsumed_tail
                    except zlib.error as exc:
                        return f"damaged image data ({exc})"
            stored = f.read(4)
            if len(stored) < 4:
                return f"truncated inside its {_name(kind)} chunk"
            if struct.unpack(">I", stored)[0] != crc:
                return f"a CRC error in its {_name(kind)} chunk"
            if kind == b"IHDR":
                if length != 13:
                    return "a damaged header chunk"
                width, height, depth, colour, compression, filtering, interlace = struct.unpack(
                    ">IIBBBBB", first)
                if (not width or not height or depth not in _DEPTHS.get(colour, ()) or compression
                        or filtering or interlace > 1):
                    return "a header with impossible values"
                expected = image_data_bytes(width, height, depth, colour, interlace)
                palette_needed = colour == 3
            elif kind == b"PLTE":
                seen_palette = True
            elif kind == b"IDAT":
                seen_idat = True
            elif seen_idat:
                idat_done = True
            if kind == b"IEND":
                break
    if not seen_idat:
        return "no image data"
    if not inflate_data:
        return None
    if got < expected or (got == expected and not inflate.eof and not extra_data_ok):
        return "its image data ends before its last row"
    if not extra_data_ok and (got > expected or inflate.unused_data):
        return EXTRA_DATA
    return None


_PIXEL_CHUNKS = {b"IHDR", b"IDAT", b"IEND"}


def _chunks(f: BinaryIO) -> Iterator[tuple[bytes, bytes]]:
    """(kind, 8-byte header) of each chunk of an open PNG, to its end chunk; the file is
    left at the chunk's data."""
    f.seek(len(SIGNATURE))
    while True:
        at, header = f.tell(), f.read(8)
        if len(header) < 8:
            return
        length, kind = struct.unpack(">I4s", header)
        yield kind, header
        if kind == b"IEND":
            return
        f.seek(at + 8 + length + 4)


def has_other_chunks(path: str | Path) -> bool:
    """Whether the PNG at ``path`` has chunks besides its header, image data and end."""
    with open(path, "rb") as f:
        return any(kind not in _PIXEL_CHUNKS for kind, _ in _chunks(f))


def copy_pixel_chunks(path: str | Path, target: BinaryIO) -> None:
    """Write the PNG at ``path`` to ``target`` with only the chunks that hold its pixels
    (header, image data, end), a piece at a time. For OpenCV: libpng parses every
    ancillary chunk it knows and warns on stderr, without the file's name, of any it finds
    malformed (a 1-byte bKGD, a short iCCP, a known-bad sRGB profile), although OpenCV uses
    none of them. Checked by ``png_stream_problem`` first: the chunks are walked, not
    judged, here."""
    target.write(SIGNATURE)
    with open(path, "rb") as f:
        for kind, header in _chunks(f):
            if kind not in _PIXEL_CHUNKS:
                continue
            target.write(header)
            left = struct.unpack(">I", header[:4])[0] + 4  # the data and its CRC
            while left:
                piece = f.read(min(left, _PIECE))
                if not piece:
                    return
                target.write(piece)
                left -= len(piece)
