"""Declaring a setting once: its default, help, section, command-line flag and valid range.

Dataclass fields made with ``setting(...)`` carry this in their metadata; ``upright.config``
reads it to validate values, coerce ``--set key=value`` text, and generate the ``train``
flags with their help, so a setting cannot exist without its flag, help and check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, field
from typing import Any

SECTIONS = {
    "data": "data protocol",
    "augment": "training augmentation",
    "model": "model",
    "optim": "optimisation",
    "runtime": "runtime",
}


def setting(default: Any = MISSING, *, help: str, section: str,
            factory: Callable[[], Any] | None = None, choices: Sequence[Any] | None = None,
            low: float | None = None, high: float | None = None, above: float | None = None,
            flag: str | None = None, metavar: str | tuple[str, ...] | None = None,
            length: int | None = None, derived: bool = False, cli: bool = True,
            text: Callable[[str], Any] | None = None) -> Any:
    """A dataclass field that describes itself.

    ``low``/``high``: inclusive bounds (of each item, for lists); ``above``: an exclusive lower
    bound; ``length``: a list's exact length; ``derived``: set from the data, not by users;
    ``cli``: False keeps it out of the generated flags (``--set`` still reaches it);
    ``text``: reads the value from command-line text (ValueError when it cannot)."""
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}")
    meta = {"help": help, "section": section, "choices": tuple(choices) if choices else None,
            "low": low, "high": high, "above": above, "flag": flag, "metavar": metavar,
            "length": length, "derived": derived, "cli": cli, "text": text}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def default_of(f: Field) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '1h30m' -> seconds (ValueError otherwise)."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (try 90, 90s, 10m or 1h)")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
