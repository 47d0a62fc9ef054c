"""Sample test images shipped inside the package, so a demo needs no download.

MNIST: 500 test digits (LeCun, Cortes and Burges; CC BY-SA 3.0). Olivetti: 5 faces of each
of the 12 test people (AT&T Laboratories Cambridge). Made by scripts/make_samples.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "shipped" / "samples"


@dataclass
class Samples:
    images: np.ndarray  # (N, H, W) uint8
    indices: np.ndarray  # index of each image in its full source
    groups: np.ndarray  # digit or person


def load_samples(dataset: str) -> Samples:
    """The shipped samples of ``mnist`` or ``olivetti`` (plain arrays: no pickle)."""
    path = SAMPLES_DIR / f"{dataset}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no shipped samples for {dataset!r} (mnist or olivetti)")
    with np.load(path, allow_pickle=False) as data:
        return Samples(data["images"], data["indices"], data["groups"])
