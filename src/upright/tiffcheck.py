"""The JPEG data of a JPEG-compressed TIFF checked before libtiff decodes it.

libtiff hands each strip or tile of a JPEG-compressed TIFF (compression 7) to libjpeg,
which meets lost or overwritten bytes with a warning that libtiff does not pass on: Pillow
returns grey or garbage where the data was, and nothing says so. Each strip or tile is a
JPEG of its own, its tables kept once in the JPEGTables tag, so TurboJPEG can judge it
(upright.jpegdecode, at 1/8 scale: every coefficient entropy-decoded, few pixels made).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from upright.jpegdecode import JpegDamage, JpegNotForTurbo, check_jpeg

JPEG_COMPRESSION = 7  # "new-style" JPEG; the old style (6) is left to libtiff
_TAGS = {"compression": 259, "samples": 277, "planar": 284, "strip_offsets": 273,
         "strip_counts": 279, "tile_offsets": 324, "tile_counts": 325, "tables": 347}
_COLOURSPACES = {1: "GRAY", 3: "RGB", 4: "CMYK"}  # by components in one strip's JPEG
_EOI, _SOI = b"\xff\xd9", b"\xff\xd8"


def _as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def tiff_jpeg_problem(path: str | Path, tags: Any) -> str | None:
    """What libjpeg finds wrong with the JPEG strips or tiles of the TIFF at ``path``
    (``tags``: Pillow's ``tag_v2`` of its first image), or None: for other compressions,
    whole data, or a JPEG TurboJPEG cannot judge (an unusual chroma subsampling)."""
    if tags.get(_TAGS["compression"]) != JPEG_COMPRESSION:
        return None
    samples = int(tags.get(_TAGS["samples"], 1))
    components = 1 if tags.get(_TAGS["planar"], 1) == 2 else samples
    colourspace = _COLOURSPACES.get(components)
    if colourspace is None:
        return None
    tiled = _TAGS["tile_offsets"] in tags
    offsets = _as_tuple(tags.get(_TAGS["tile_offsets" if tiled else "strip_offsets"], ()))
    counts = _as_tuple(tags.get(_TAGS["tile_counts" if tiled else "strip_counts"], ()))
    if len(offsets) != len(counts):
        return f"{len(offsets)} {'tile' if tiled else 'strip'} offsets but {len(counts)} byte counts"
    tables = tags.get(_TAGS["tables"]) or b""
    # The tables' own stream ends with an end marker, and each strip starts with a start marker.
    head = tables[:-2] if isinstance(tables, bytes) and tables.endswith(_EOI) else b""
    part = "tile" if tiled else "strip"
    with open(path, "rb") as f:
        for n, (offset, count) in enumerate(zip(offsets, counts, strict=True)):
            if not count:  # a sparse file's empty tile: libtiff fills it, no JPEG to judge
                continue
            f.seek(int(offset))
            data = f.read(int(count))
            if len(data) < int(count):
                return f"{part} {n} is cut short"
            if not data.startswith(_SOI):  # (TurboJPEG's word for that is an unknown subsampling)
                return f"{part} {n} does not start as JPEG data"
            stream = head + data[2:] if head else data
            try:
                check_jpeg(stream, colourspace)
            except JpegDamage as exc:
                return f"{part} {n}: {exc}"
            except JpegNotForTurbo as exc:
                if "subsampling" in str(exc):
                    return None  # TurboJPEG cannot judge it; libtiff decodes it as before
                return f"{part} {n}: {exc}"
    return None
