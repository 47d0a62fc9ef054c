"""A TIFF's layout, and the JPEG data of a JPEG-compressed one, checked before it is decoded.

A TIFF whose strips or tiles do not cover the size its header gives (a damaged
RowsPerStrip, ImageLength or ImageWidth) decodes with the missing parts black, in silence,
in Pillow and tifffile alike: ``tiff_layout_problem`` counts them first. libtiff stops
inflating a deflate strip once it has its rows and never checks the stream's end:
``tiff_deflate_problem`` does. ``tiff_problem`` runs every check.

libtiff hands each strip or tile of a JPEG-compressed TIFF (compression 7) to libjpeg,
which meets lost or overwritten bytes with a warning that libtiff does not pass on: Pillow
returns grey or garbage where the data was, and nothing says so. Each strip or tile is a
JPEG of its own, its tables kept once in the JPEGTables tag, so TurboJPEG can judge it
(upright.jpegdecode, at 1/8 scale: every coefficient entropy-decoded, few pixels made).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import simplejpeg

from upright.jpegdecode import JpegDamage, JpegNotForTurbo, check_jpeg

JPEG_COMPRESSION = 7  # "new-style" JPEG; the old style (6) is left to libtiff
DEFLATE_COMPRESSIONS = (8, 32946)  # Adobe's and the old code
_PIECE = 1 << 20
_TAGS = {"width": 256, "height": 257, "bits": 258, "compression": 259, "photometric": 262,
         "ycbcr_subsampling": 530, "samples": 277, "rows_per_strip": 278,
         "planar": 284, "strip_offsets": 273, "strip_counts": 279, "tile_width": 322,
         "tile_height": 323, "tile_offsets": 324, "tile_counts": 325, "tables": 347}
_COLOURSPACES = {1: "GRAY", 3: "RGB", 4: "CMYK"}  # by components in one strip's JPEG
_EOI, _SOI = b"\xff\xd9", b"\xff\xd8"


def _as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


@dataclass(frozen=True)
class _Layout:
    """Where a TIFF's first image keeps its pixels, from Pillow's ``tag_v2``."""

    width: int
    height: int
    samples: int
    planes: int  # the samples where each is kept apart (planar configuration 2), else 1
    tiled: bool
    offsets: tuple
    counts: tuple
    segment_width: int  # a strip's (the image's) or a tile's
    segment_rows: int  # a strip's (RowsPerStrip, at most the height) or a tile's

    @property
    def part(self) -> str:
        return "tile" if self.tiled else "strip"


def _layout(tags: Any) -> _Layout:
    width, height = int(tags.get(_TAGS["width"], 0)), int(tags.get(_TAGS["height"], 0))
    samples = int(tags.get(_TAGS["samples"], 1))
    tiled = _TAGS["tile_offsets"] in tags
    if tiled:
        segment_width, rows = int(tags.get(_TAGS["tile_width"], 0)), int(tags.get(_TAGS["tile_height"], 0))
    else:
        segment_width, rows = width, min(int(tags.get(_TAGS["rows_per_strip"], height) or height), height)
    return _Layout(width, height, samples, samples if tags.get(_TAGS["planar"], 1) == 2 else 1, tiled,
                   _as_tuple(tags.get(_TAGS["tile_offsets" if tiled else "strip_offsets"], ())),
                   _as_tuple(tags.get(_TAGS["tile_counts" if tiled else "strip_counts"], ())),
                   segment_width, rows)


def tiff_problem(path: str | Path, tags: Any) -> str | None:
    """What is wrong with the TIFF at ``path`` (``tags``: Pillow's ``tag_v2`` of its first
    image) before any decoder reads it (a phrase for an error message), or None."""
    return (tiff_layout_problem(path, tags) or tiff_jpeg_problem(path, tags)
            or tiff_deflate_problem(path, tags))


def tiff_layout_problem(path: str | Path, tags: Any) -> str | None:
    """What is wrong with where the TIFF at ``path`` keeps its pixels, or None: fewer strips
    or tiles than its size needs, or one that runs past the end of the file."""
    layout = _layout(tags)
    width, height, offsets, counts = layout.width, layout.height, layout.offsets, layout.counts
    if layout.tiled:
        if not layout.segment_width or not layout.segment_rows:
            return "tiles without a tile size"
        needed = layout.planes * -(-width // layout.segment_width) * -(-height // layout.segment_rows)
    else:
        needed = layout.planes * -(-height // (layout.segment_rows or 1))
    part = f"{layout.part}s"
    # (libtiff estimates byte counts a file lacks: only the offsets are then counted)
    present = min(len(offsets), len(counts)) if counts else len(offsets)
    if present < needed:
        return f"{present} {part} where its size ({width}x{height}) needs {needed}"
    if not counts or tags.get(_TAGS["compression"], 1) == 1:
        return None  # (uncompressed rows are read as far as they go: Pillow says where they end)
    size = Path(path).stat().st_size
    for n, (offset, count) in enumerate(zip(offsets[:needed], counts[:needed], strict=True)):
        if int(offset) + int(count) > size:
            return f"{layout.part} {n} runs past the end of the file"
    return None


def tiff_jpeg_problem(path: str | Path, tags: Any) -> str | None:
    """What libjpeg finds wrong with the JPEG strips or tiles of the TIFF at ``path``
    (``tags``: Pillow's ``tag_v2`` of its first image), or None: for other compressions,
    whole data, or a JPEG TurboJPEG cannot judge (an unusual chroma subsampling)."""
    if tags.get(_TAGS["compression"]) != JPEG_COMPRESSION:
        return None
    layout = _layout(tags)
    components = layout.samples // layout.planes
    colourspace = _COLOURSPACES.get(components)
    if colourspace is None:
        return None
    offsets, counts, part = layout.offsets, layout.counts, layout.part
    # Each JPEG is as wide as the image (a strip) or as a tile: libtiff leaves the rest black.
    expected_width = layout.segment_width
    if len(offsets) != len(counts):
        return f"{len(offsets)} {part} offsets but {len(counts)} byte counts"
    tables = tags.get(_TAGS["tables"]) or b""
    # The tables' own stream ends with an end marker, and each strip starts with a start marker.
    end = tables.rfind(_EOI) if isinstance(tables, bytes) else -1
    head = tables[:end] if end > 0 else b""
    with open(path, "rb") as f:
        for n, (offset, count) in enumerate(zip(offsets, counts, strict=True)):
            if not count:  # a sparse file's empty tile: no JPEG to judge here (libtiff's to refuse)
                continue
            f.seek(int(offset))
            data = f.read(int(count))
            if len(data) < int(count):
                return f"{part} {n} is cut short"
            if not data.startswith(_SOI):  # (TurboJPEG's word for that is an unknown subsampling)
                return f"{part} {n} does not start as JPEG data"
            stream = head + data[2:] if head else data
            try:
                frame_width = simplejpeg.decode_jpeg_header(stream)[1]
            except ValueError:
                frame_width = None  # (check_jpeg says why)
            # (planes kept apart may hold subsampled chroma: narrower by design)
            if frame_width not in (None, expected_width) and layout.planes == 1:
                return f"{part} {n} is {frame_width} pixels wide, not {expected_width}"
            try:
                check_jpeg(stream, colourspace)
            except JpegDamage as exc:
                return f"{part} {n}: {exc}"
            except JpegNotForTurbo as exc:
                if "subsampling" in str(exc):
                    return None  # TurboJPEG cannot judge it; libtiff decodes it as before
                return f"{part} {n}: {exc}"
    return None


def tiff_deflate_problem(path: str | Path, tags: Any) -> str | None:
    """What is wrong with the deflate data of a deflate-compressed TIFF at ``path``, or None.
    libtiff stops inflating a strip once it has its rows and never checks the stream's
    end or checksum, so a strip whose second half was lost decodes to one colour there."""
    if tags.get(_TAGS["compression"]) not in DEFLATE_COMPRESSIONS:
        return None
    layout = _layout(tags)
    height, rows, offsets, counts, part = (layout.height, layout.segment_rows, layout.offsets,
                                          layout.counts, layout.part)
    bits = max(_as_tuple(tags.get(_TAGS["bits"], 1)))
    # bytes a whole strip or tile inflates to
    needed = rows * -(-layout.segment_width * (layout.samples // layout.planes) * bits // 8)
    # YCbCr with its chroma subsampled packs blocks of pixels in fewer bytes: the stream's end
    # is checked, not its length.
    subsampled = tags.get(_TAGS["photometric"]) == 6 and tuple(
        _as_tuple(tags.get(_TAGS["ycbcr_subsampling"], (2, 2)))) != (1, 1)
    tiled = layout.tiled
    per_column = -(-height // rows) if rows else 1
    with open(path, "rb") as f:
        for n, (offset, count) in enumerate(zip(offsets, counts, strict=False)):
            if not count:
                continue
            # (a strip at the bottom holds only the rows left)
            last_row = not tiled and (n % per_column) == per_column - 1
            want = (height - rows * (per_column - 1)) * (needed // rows) if last_row and rows else needed
            f.seek(int(offset))
            inflate, got, left = zlib.decompressobj(), 0, int(count)
            try:
                while left and not inflate.eof:
                    piece = f.read(min(left, _PIECE))
                    if not piece:
                        break
                    left -= len(piece)
                    while piece and not inflate.eof:
                        got += len(inflate.decompress(piece, _PIECE))
                        piece = inflate.unconsumed_tail
            except zlib.error as exc:
                return f"{part} {n}: damaged deflate data ({exc})"
            if not inflate.eof or (got < want and not subsampled):
                return f"{part} {n}: its deflate data ends before its rows"
    return None

