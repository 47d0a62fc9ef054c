"""Named recipes: TOML files in this folder, each a set of TrainConfig settings.

A recipe names only what differs from TrainConfig's defaults (``[model]`` for the
network) and may start from another (``base = "mnist-fast"``). ``make_config`` turns a
recipe and any overrides into a validated TrainConfig.
"""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

import tomllib

from upright.config import ConfigError, TrainConfig, apply_overrides, check_value, validate
from upright.models.model import ModelSpec


def _read(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if name in seen:
        raise ConfigError(f"recipe {name!r}: its bases loop ({' -> '.join(seen + (name,))})")
    path = resources.files(__package__) / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown recipe {name!r}; known: {', '.join(recipe_names())}")
    values = tomllib.loads(path.read_text(encoding="utf-8"))
    base = values.pop("base", None)
    merged = _read(base, seen + (name,)) if base else {}
    model = {**merged.get("model", {}), **values.pop("model", {})}
    merged.update(values)
    if model:
        merged["model"] = model
    return merged


def recipe_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).iterdir() if p.name.endswith(".toml"))


def _check(name: str, values: dict[str, Any]) -> dict[str, Any]:
    """Every key of a recipe file is a real setting with a valid value."""
    for key, value in values.items():
        if key == "model":
            for sub, item in value.items():
                check_value(f"model.{sub}", item)
        else:
            check_value(key, value)
    return values


RECIPES: dict[str, dict[str, Any]] = {name: _check(name, _read(name)) for name in recipe_names()}


def make_config(recipe: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A recipe's config with some settings replaced (``key`` or ``model.key``, or a nested
    ``model`` dict whose options merge into the recipe's), validated before any work."""
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
    values = copy.deepcopy(RECIPES[recipe])
    apply_overrides(values, overrides or {})
    model = values.pop("model", {})
    config = TrainConfig.from_dict(values)
    config.model = ModelSpec(**{**ModelSpec().to_dict(), **model})
    return validate(config)
