"""A folder of the user's own upright images, as a source (split by file)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from upright.data.source import SourceData
from upright.errors import DatasetError

ASPECT_POLICIES = ("crop", "pad")  # centre-crop to a square, or pad to one with black
COLOUR_MODES = ("grey", "rgb")


class FolderError(DatasetError):
    """The folder holds no usable image."""


def _prepare(path: Path, size: int, aspect: str, colour: str) -> np.ndarray:
    with Image.open(path) as opened:
        opened.load()
        image = ImageOps.exif_transpose(opened)
    image = image.convert("L" if colour == "grey" else "RGB")
    if aspect == "crop":
        image = ImageOps.fit(image, (size, size), Image.BILINEAR)
    else:
        image = ImageOps.pad(image, (size, size), Image.BILINEAR, color=0)
    return np.asarray(image, dtype=np.uint8)


def load_folder(path: str, image_size: int = 64, aspect: str = "crop", colour: str = "grey",
                test_fraction: float = 0.2, seed: int = 0, **_: object) -> SourceData:
    """Every readable image under ``path`` (recursively), squared and resized to
    ``image_size``; a seeded ``test_fraction`` of the files is the test split.
    Unreadable files are skipped with one warning naming each. Nothing is written."""
    if aspect not in ASPECT_POLICIES:
        raise ValueError(f"aspect must be one of {ASPECT_POLICIES}, got {aspect!r}")
    if colour not in COLOUR_MODES:
        raise ValueError(f"colour must be one of {COLOUR_MODES}, got {colour!r}")
    root = Path(path)
    if not root.is_dir():
        raise FolderError(f"{root}: not a folder")
    images, skipped = [], []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            images.append(_prepare(file, image_size, aspect, colour))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            skipped.append(f"{file} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
    if skipped:
        print(f"upright: warning: skipped {len(skipped)} unreadable file(s): {'; '.join(skipped)}",
              file=sys.stderr)
    if not images:
        raise FolderError(f"{root}: no readable image (PNG, JPEG, BMP, TIFF or WebP) found")
    n = len(images)
    is_test = np.zeros(n, dtype=bool)
    n_test = int(round(test_fraction * n)) if n > 2 else 0
    is_test[np.random.default_rng(seed).permutation(n)[:n_test]] = True
    return SourceData(name=f"folder:{root}", images=np.stack(images), groups=np.arange(n),
                      is_test=is_test, group_kind="file", skipped=skipped)
