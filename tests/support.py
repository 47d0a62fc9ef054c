"""Test helpers (imported by tests; fixtures live in conftest.py): the data mirror and a
synthetic folder of upright glyphs that any machine can make in milliseconds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def have_mirror(*parts: str) -> bool:
    mirror = os.environ.get("UPRIGHT_DATA_MIRROR")
    return bool(mirror) and Path(mirror, *parts).exists()


needs_mnist = pytest.mark.skipif(not have_mirror("mnist"),
                                 reason="UPRIGHT_DATA_MIRROR with mnist/ not available")


# A run small enough for every fast test: the settings of the tiny_run fixture.
TINY_RUN = {"limit": None, "image_size": 28, "test_fraction": 0.25, "max_epochs": 4,
            "angles_per_epoch": 24, "val_angles": 2, "test_angles": 4, "train_eval_images": 20,
            "batch_size": 64, "eval_batch_size": 64, "grid_images": 9, "seed": 3}


def glyph(rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """An upright glyph with an unambiguous up: a stem, a bar to the right at its top, a dot
    at its lower left; thickness, size, place and brightness vary."""
    image = np.zeros((size, size), np.uint8)
    s = size / 28
    cx, top = int(13 * s) + rng.integers(-2, 3), int(5 * s) + rng.integers(-2, 3)
    height, width, thick = int(17 * s) + rng.integers(-2, 3), int(8 * s) + rng.integers(-1, 3), \
        max(2, int(3 * s) + rng.integers(-1, 2))
    value = int(rng.integers(170, 256))
    image[top:top + height, cx:cx + thick] = value
    image[top:top + thick, cx:cx + width] = value
    dot = max(2, thick)
    image[top + height - dot:top + height, cx - 2 * dot - 1:cx - dot - 1] = value
    return image


def write_glyph_folder(folder: Path, count: int = 60, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(glyph(rng)).save(folder / f"glyph{i:03d}.png")
    return folder
