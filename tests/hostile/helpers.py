"""Small real image files and report readers for the hostile tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image


def digit(size: int = 28, seed: int = 0) -> np.ndarray:
    """A bar and a blob: a grey image with a clear up and down."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size), np.uint8)
    image[size // 7: size // 2, size * 3 // 7: size * 4 // 7] = 255
    image[size // 2: size * 5 // 7, size // 4: size * 3 // 4] = 160 + rng.integers(0, 60)
    return image


def save_png(path: Path, pixels: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(digit() if pixels is None else pixels).save(path, format="PNG")
    return path


def strict_json(path: Path):
    """Parse as strict JSON: NaN or Infinity in the file is a failure."""
    def refuse(token: str):
        raise ValueError(f"{path}: {token} is not JSON")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def report_rows(outdir: Path, name: str = "angles") -> tuple[list[dict], list[dict]]:
    with open(outdir / f"{name}.csv", newline="", encoding="utf-8") as f:
        csv_rows = list(csv.DictReader(f))
    return csv_rows, strict_json(outdir / f"{name}.json")


def correct(*args: str | Path) -> list[str]:
    return ["correct", *(str(a) for a in args), "--no-progress"]
