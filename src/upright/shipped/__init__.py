"""Trained models shipped inside the package (safetensors + model.json + MODEL_CARD.md)."""

from __future__ import annotations

from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent
SHIPPED_MODELS = {"mnist": SHIPPED_DIR / "mnist", "faces": SHIPPED_DIR / "faces"}
DEFAULT_MODEL = "mnist"


def shipped_model(name: str) -> Path | None:
    """The folder of a shipped model by name, if it is installed."""
    folder = SHIPPED_MODELS.get(name)
    return folder if folder is not None and (folder / "model.json").is_file() else None
