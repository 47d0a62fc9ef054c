"""Self-describing, safe checkpoints: ``model.safetensors`` + ``model.json``.

Loading reads JSON and raw tensors only; nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from upright import fileio
from upright.models.model import AngleModel, ModelSpec

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"
FORMAT = "upright-model/1"


class ModelLoadError(RuntimeError):
    """A model file is missing, corrupt or not an upright model."""


def save_weights(path: str | Path, model: AngleModel) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    fileio.write_with(path, lambda tmp: save_file(state, str(tmp)))


def save(folder: str | Path, model: AngleModel, info: dict[str, Any] | None = None) -> None:
    """Write weights and config (spec plus anything in ``info``: data protocol, metrics)."""
    folder = Path(folder)
    save_weights(folder / WEIGHTS_FILE, model)
    write_config(folder, model.spec, info or {})


def write_config(folder: str | Path, spec: ModelSpec, info: dict[str, Any]) -> None:
    config = {"format": FORMAT, "model": spec.to_dict(), **info}
    fileio.write_json(Path(folder) / CONFIG_FILE, config)


def read_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing (not an upright run or model folder)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelLoadError(f"{path}: not an upright model config (format {FORMAT!r} expected)")
    return config


def model_folder(path: str | Path) -> Path:
    """Accept a run/model folder, a path to one of its two files, or a shipped model's name
    (``mnist``, ``faces``) when no such path exists."""
    from upright.shipped import SHIPPED_MODELS, shipped_model

    path = Path(path)
    if path.is_file() and path.name in (WEIGHTS_FILE, CONFIG_FILE):
        return path.parent
    if not path.exists():
        shipped = shipped_model(str(path))
        if shipped is not None:
            return shipped
        names = ", ".join(SHIPPED_MODELS)
        raise ModelLoadError(f"{path}: no such model folder (nor a shipped model: {names})")
    return path


def load(path: str | Path) -> tuple[AngleModel, dict[str, Any]]:
    """Rebuild a model (in eval mode) and its config from a folder written by ``save``."""
    folder = model_folder(path)
    config = read_config(folder)
    try:
        model = AngleModel(ModelSpec.from_dict(config["model"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{folder / CONFIG_FILE}: cannot build the model ({exc})") from exc
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelLoadError(f"{weights}: missing")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{weights}: not a readable safetensors file ({exc})") from exc
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelLoadError(f"{weights}: weights do not fit {CONFIG_FILE} ({first})") from exc
    model.eval()
    return model, config


def load_file_state(path: str | Path) -> dict:
    """Raw tensors from a safetensors file."""
    return load_file(str(path))
