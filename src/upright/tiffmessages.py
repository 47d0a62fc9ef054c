"""libtiff's errors and warnings, caught for the file being read instead of printed.

libtiff (Pillow's copy decodes compressed TIFFs) writes its complaints on stderr, without
the file's name, and a few errors (a fax strip's bad code words) leave Pillow returning
garbage as if nothing were wrong. Here libtiff's handlers are replaced, once, by ones that
hand each message to the thread that is reading a file (``collected``) so that the error
can name the file, and print it as libtiff would anywhere else.

Only where the handlers can be reached and their ``va_list`` formatted with C's own
``vsnprintf`` (Linux on x86-64, Pillow's bundled libtiff); elsewhere libtiff keeps its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import platform
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)
_local = threading.local()
_lock = threading.Lock()
_installed: list = []  # the callbacks, kept alive for as long as libtiff may call them
_state: dict[str, bool] = {}
# The name Pillow opens every TIFF under in libtiff: no help in a message about our file.
_PILLOW_NAME = "tempfile.tif"


@dataclass
class TiffMessages:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _libtiff_path() -> str | None:
    """Where the libtiff that Pillow's decoder uses is loaded (None where it cannot be told)."""
    import PIL._imaging  # noqa: F401 - loads the libtiff it links

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libtiff" in line and "/" in line}
    except OSError:
        return None
    return next(iter(sorted(paths)), None) if len(paths) == 1 else None


def _format(fmt: bytes | None, args: int | None, libc) -> str:
    if not fmt:
        return ""
    buffer = ctypes.create_string_buffer(1024)
    libc.vsnprintf(buffer, len(buffer), fmt, ctypes.c_void_p(args))
    message = buffer.value.decode("utf-8", "replace").strip()
    return message[len(_PILLOW_NAME) + 2:] if message.startswith(_PILLOW_NAME + ": ") else message


def _module(module: bytes | None) -> str:
    name = module.decode("utf-8", "replace") if module else ""
    return "" if name == _PILLOW_NAME else name


def _install() -> bool:
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return False
    path = _libtiff_path()
    if path is None:
        return False
    try:
        libtiff, libc = ctypes.CDLL(path), ctypes.CDLL(None)
        libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
    except (OSError, AttributeError):
        return False

    def handler(kind: str):
        def on_message(module, fmt, args) -> None:
            name, message = _module(module), _format(fmt, args, libc)
            messages = getattr(_local, "messages", None)
            if messages is not None:
                getattr(messages, kind).append(f"{name}: {message}" if name else message)
            else:  # not a read of ours: as libtiff itself would print it
                warning = "Warning, " if kind == "warnings" else ""
                sys.stderr.write(f"{name}: {warning}{message}.\n" if name else f"{warning}{message}.\n")
        return _HANDLER(on_message)

    errors, warnings = handler("errors"), handler("warnings")
    for name, callback in (("TIFFSetErrorHandler", errors), ("TIFFSetWarningHandler", warnings)):
        setter = getattr(libtiff, name, None)
        if setter is None:
            return False
        setter.argtypes, setter.restype = [_HANDLER], ctypes.c_void_p
        setter(callback)
        _installed.append(callback)
    return True


def _ready() -> bool:
    with _lock:
        if "installed" not in _state:
            _state["installed"] = _install()
        return _state["installed"]


@contextlib.contextmanager
def collected() -> Iterator[TiffMessages | None]:
    """libtiff's messages while this thread decodes (None where they cannot be caught)."""
    if not _ready():
        yield None
        return
    messages, before = TiffMessages(), getattr(_local, "messages", None)
    _local.messages = messages
    try:
        yield messages
    finally:
        _local.messages = before
