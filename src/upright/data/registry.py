"""The dataset registry: ``name`` or ``name:ARGUMENT`` (``folder:PATH``) to a ``SourceData``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from upright.data.folder import load_folder
from upright.data.mnist import load_mnist
from upright.data.olivetti import load_olivetti
from upright.data.source import SourceData
from upright.errors import DatasetError

# Loaders without an argument ignore the options meant for folder sources.
SOURCES: dict[str, Callable[..., SourceData]] = {
    "mnist": lambda **_: load_mnist(),
    "olivetti": lambda **_: load_olivetti(),
    "folder": load_folder,
}


def load_source(spec: str, **options: Any) -> SourceData:
    """Load ``mnist``, ``olivetti`` or ``folder:PATH`` (options: image_size, aspect, colour,
    test_fraction, seed)."""
    name, sep, argument = spec.partition(":")
    if name not in SOURCES:
        raise DatasetError(f"unknown dataset {spec!r}; known: mnist, olivetti, folder:PATH")
    if name == "folder" and not argument:
        raise DatasetError("a folder dataset needs a path: folder:PATH")
    return SOURCES[name](argument, **options) if sep else SOURCES[name](**options)
