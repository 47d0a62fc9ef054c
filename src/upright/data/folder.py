"""A folder of the user's own upright images, as a source (split by file)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from upright.data.source import SourceData
from upright.errors import DatasetError
from upright.prepare import ASPECT_POLICIES, prepare_image

COLOUR_MODES = {"grey": 1, "rgb": 3}  # -> channels


class FolderError(DatasetError):
    """The folder holds no usable image."""


def _prepare(path: Path, size: int, aspect: str, colour: str) -> np.ndarray:
    """The file as correction reads it (upright.imagefiles), prepared by the same function."""
    from upright.imagefiles import read_image  # here: OpenCV only once a folder is read

    decoded = read_image(path)
    return prepare_image(decoded.pixels, size, size, COLOUR_MODES[colour], aspect, decoded.mode)


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
        except (OSError, ValueError) as exc:  # ImageFileError names the file and the problem
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            skipped.append(text if text.startswith(str(file)) else f"{file} ({text})")
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
