"""The dataset registry: a name (or ``folder:PATH``) to a loader returning ``SourceData``."""

from __future__ import annotations

from collections.abc import Callable

from upright.data.mnist import load_mnist
from upright.data.source import SourceData

SOURCES: dict[str, Callable[[], SourceData]] = {
    "mnist": load_mnist,
}


def load_source(spec: str) -> SourceData:
    """Load a dataset by registry name."""
    if spec not in SOURCES:
        raise ValueError(f"unknown dataset {spec!r}; known: {', '.join(SOURCES)}")
    return SOURCES[spec]()
