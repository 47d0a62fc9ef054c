"""Self-describing, safe checkpoints: ``model.safetensors`` + ``model.json``.

Loading reads JSON and raw tensors only; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from upright import fileio
from upright.errors import UserError
from upright.models.model import AngleModel, ModelSpec

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"
FORMAT = "upright-model/1"


class ModelLoadError(UserError, RuntimeError):
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
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelLoadError(f"{path}: not an upright model config (format {FORMAT!r} expected)")
    return config


def model_folder(path: str | Path) -> Path:
    """Accept a run/model folder, a path to one of its two files, or a shipped model's name
    (``mnist``, ``faces``). A path that is not a model folder (a folder of photos that
    happens to be called ``mnist``) falls back to the shipped model of that name."""
    from upright.shipped import SHIPPED_MODELS, shipped_model

    path = Path(path)
    if path.is_file() and path.name in (WEIGHTS_FILE, CONFIG_FILE):
        return path.parent
    if path.is_dir() and (path / CONFIG_FILE).is_file():
        return path
    shipped = shipped_model(str(path))
    if shipped is not None:
        return shipped
    names = ", ".join(SHIPPED_MODELS)
    if path.exists():
        raise ModelLoadError(f"{path}: not a model folder (no {CONFIG_FILE}), nor a shipped model "
                             f"({names})")
    raise ModelLoadError(f"{path}: no such model folder (nor a shipped model: {names})")


# Bounds checked before anything is allocated: a config is input, and a hostile one could
# ask for a 10^9-pixel input or a billion bins.
MAX_INPUT_SIDE = 4096
MAX_CHANNELS = 4
MAX_OPTION_INT = 100_000
SPEC_FIELDS = {f.name: f for f in fields(ModelSpec)}


def _positive_int(value: Any, name: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ValueError(f"{name} must be an integer from 1 to {high}, got {value!r}")
    return value


def check_spec(data: Any) -> ModelSpec:
    """A ModelSpec from a config's "model" entry, every field checked; ValueError says which."""
    if not isinstance(data, dict):
        raise ValueError(f'"model" must be an object, got {type(data).__name__}')
    channels = _positive_int(data.get("channels", 1), "channels", MAX_CHANNELS)
    _positive_int(data.get("height", 28), "height", MAX_INPUT_SIDE)
    _positive_int(data.get("width", 28), "width", MAX_INPUT_SIDE)
    for key in ("backbone", "head", "input_mask", "aspect", "levels", "framing"):
        if key in data and not isinstance(data[key], str):
            raise ValueError(f"{key} must be a name, got {data[key]!r}")
        choices = SPEC_FIELDS[key].metadata.get("choices")
        if key in data and choices and data[key] not in choices:
            raise ValueError(f"{key} must be one of {', '.join(choices)}, got {data[key]!r}")
    for key in ("mean", "std"):
        values = data.get(key, [0.0] if key == "mean" else [1.0])
        if (not isinstance(values, list) or len(values) != channels
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
            raise ValueError(f"{key} must be a list of {channels} numbers (one per channel), "
                             f"got {values!r}")
        if not all(math.isfinite(v) for v in values) or (key == "std" and 0 in values):
            raise ValueError(f"{key} must be finite{' and not zero' if key == 'std' else ''}, "
                             f"got {values}")
    blur = data.get("input_blur", 0.0)
    if isinstance(blur, bool) or not isinstance(blur, (int, float)) or not math.isfinite(blur):
        raise ValueError(f"input_blur must be a number, got {blur!r}")
    for key in ("backbone_options", "head_options"):
        options = data.get(key, {})
        if not isinstance(options, dict):
            raise ValueError(f"{key} must be an object, got {options!r}")
        for name, value in options.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{key}.{name} must be finite, got {value}")
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OPTION_INT:
                raise ValueError(f"{key}.{name} is absurd: {value}")
    bins = data.get("head_options", {}).get("bins")
    if data.get("head") == "bins" and bins is not None:
        _positive_int(bins, "head_options.bins", MAX_OPTION_INT)
        if bins < 2:
            raise ValueError(f"head_options.bins must be 2 or more, got {bins}")
    return ModelSpec.from_dict(data)


def load(path: str | Path) -> tuple[AngleModel, dict[str, Any]]:
    """Rebuild a model (in eval mode) and its config from a folder written by ``save``.
    Every problem is one ModelLoadError that names the file, raised before any work."""
    folder = model_folder(path)
    config = read_config(folder)
    spec = _checked_spec(folder, config)
    # Built first without memory (the meta device) and held against the file's header: a
    # config asking for a network the weights do not hold fails here, before a model.json
    # with widths of 10^5 could ask for terabytes.
    shapes = {k: tuple(v.shape) for k, v in _build(folder, spec, torch.device("meta")).state_dict().items()}
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelLoadError(f"{weights}: missing")
    _check_shapes(weights, shapes)
    model = _build(folder, spec)
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


def _checked_spec(folder: Path, config: dict[str, Any]) -> ModelSpec:
    try:
        return check_spec(config.get("model"))
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{folder / CONFIG_FILE}: {exc}") from exc


class ModelBuildError(ValueError):
    """A spec the network's constructors refuse; the message is their complaint's first line."""


def build(spec: ModelSpec, device: torch.device | None = None) -> AngleModel:
    """The model a spec describes (on ``device``: the meta device allocates nothing). A
    constructor's own complaint about an option (a wrong name, a shape that does not work
    out) is one ModelBuildError line, for its caller to say where the spec came from."""
    try:
        with device or torch.device("cpu"):
            return AngleModel(spec)
    except (KeyError, TypeError, ValueError, RuntimeError, ArithmeticError, IndexError,
            NotImplementedError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelBuildError(text) from exc


def _build(folder: Path, spec: ModelSpec, device: torch.device | None = None) -> AngleModel:
    try:
        return build(spec, device)
    except ModelBuildError as exc:
        raise ModelLoadError(f"{folder / CONFIG_FILE}: cannot build the model ({exc})") from exc


def _check_shapes(weights: Path, expected: dict[str, tuple[int, ...]]) -> None:
    """The safetensors header's tensor names and shapes against the model's (the header
    only: no tensor is read)."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{weights}: not a readable safetensors file ({exc})") from exc
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        what = f"has no tensor {missing[0]}" if missing else f"has a tensor {extra[0]} it does not use"
        raise ModelLoadError(f"{weights}: weights do not fit {CONFIG_FILE} (the model it describes "
                             f"{what})")
    for name, shape in expected.items():
        if found[name] != shape:
            raise ModelLoadError(f"{weights}: weights do not fit {CONFIG_FILE} ({name} is "
                                 f"{list(found[name])} in the file, {list(shape)} in the model)")


def load_file_state(path: str | Path) -> dict:
    """Raw tensors from a safetensors file."""
    return load_file(str(path))
