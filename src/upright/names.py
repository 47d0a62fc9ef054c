"""File names as people and programs are shown them: reports and terminal messages.

A POSIX file name is bytes; Python hands undecodable ones over as lone surrogates, which
UTF-8 cannot encode. ``shown`` writes such bytes as ``\\xNN`` and control characters as
escapes, so one name reads the same in the CSV, the JSON and a message, cannot forge a
line of terminal output, and is never lost.
"""

from __future__ import annotations

import os
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Characters a spreadsheet reads as the start of a formula (OWASP's CSV-injection list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def shown(text: str | os.PathLike) -> str:
    """Printable, valid UTF-8 text for a path or a message that contains one."""
    text = os.fspath(text)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file name decoding made
        raw = text.encode("utf-8", "backslashreplace")
    text = raw.decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: _ESCAPES.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def csv_cell(text: str) -> str:
    """A text cell no spreadsheet runs as a formula: a leading quote, as exporters do."""
    return "'" + text if text.startswith(_FORMULA_START) else text
