"""Atomic file writes: a temporary file in the target folder, then a publish.

A reader never sees a half-written file, and a crash leaves the old file (or none).
Without ``overwrite`` the publish is a hard link, which fails if the name exists: two
writers racing for one name (threads or processes) cannot replace each other's file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Every temporary file starts so: recognisable (never an input, cleaned on the next run)
# and short, so that a final name near the 255-byte limit still has a temporary one.
TEMP_PREFIX = ".upright-"
TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"[A-Za-z0-9_]{6,12}" + re.escape(TEMP_SUFFIX)
                        + r"(\.[^./]{1,10})?")


def is_temp_name(name: str) -> bool:
    return _TEMP_NAME.fullmatch(name) is not None


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (threads may be
    creating files meanwhile); else set and restored at once."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_dirs(folder: str | os.PathLike) -> None:
    """``mkdir -p`` without recursion (pathlib's and os.makedirs recurse per level, which a
    folder tree a thousand levels deep turns into a RecursionError)."""
    folder = Path(folder)
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir()
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path))


def publish(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move a finished temporary file onto ``target``; without ``overwrite`` exactly one of
    several writers of one name wins, the others get FileExistsError."""
    # mkstemp made it 0600; a published file follows the umask like any other new file.
    os.chmod(tmp, 0o666 & ~current_umask())
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "exists (use --overwrite to replace it)",
                              str(target)) from None
    except OSError as exc:  # no hard links here (some network and FAT file systems)
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        # Reserve the name atomically, then put the content in its place.
        try:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, "exists (use --overwrite to replace it)",
                                  str(target)) from None
        os.replace(tmp, target)
        return
    tmp.unlink()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; publish it as ``target`` on success."""
    target = Path(target)
    make_dirs(target.parent)
    if not overwrite and target.exists():  # early, cheap refusal; publish() is the real guard
        raise FileExistsError(errno.EEXIST, "exists (use --overwrite to replace it)", str(target))
    if target.is_dir():  # else the error would name the temporary file, not the target
        raise IsADirectoryError(errno.EISDIR, "a folder is in the way of this output", str(target))
    # The target's own suffix is kept where short (numpy's savez appends .npz otherwise).
    suffix = TEMP_SUFFIX + (target.suffix if 1 < len(target.suffix) <= 11 else "")
    fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=target.parent)
    # Locked while it is being written: a later run tells a live temporary file from one a
    # killed process left (remove_stale_temps).
    fcntl.flock(fd, fcntl.LOCK_EX)
    tmp = Path(tmp_name)
    try:
        yield tmp
        publish(tmp, target, overwrite)
    finally:
        tmp.unlink(missing_ok=True)
        os.close(fd)


def remove_stale_temps(folder: str | os.PathLike, min_age: float = 10.0) -> int:
    """Delete upright's temporary files in ``folder`` that no live writer holds (left by a
    killed run) and that are older than ``min_age`` seconds (a writer locks its file just
    after making it). Returns how many were removed."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not is_temp_name(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if time.time() - os.fstat(fd).st_mtime >= min_age:
                os.unlink(entry.path)
                removed += 1
        except OSError:  # locked: a writer is at work on it
            pass
        finally:
            os.close(fd)
    return removed


def write_bytes(target: str | os.PathLike, data: bytes, overwrite: bool = True) -> None:
    with atomic_path(target, overwrite) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike, text: str, overwrite: bool = True) -> None:
    write_bytes(target, text.encode("utf-8"), overwrite)


def write_json(target: str | os.PathLike, value: Any, overwrite: bool = True, strict: bool = False) -> None:
    """``strict``: refuse NaN and infinities (ValueError) rather than write what other JSON
    readers reject."""
    text = json.dumps(value, indent=2, sort_keys=False, allow_nan=not strict)
    write_text(target, text + "\n", overwrite)


def write_with(target: str | os.PathLike, writer: Callable[[Path], None], overwrite: bool = True) -> None:
    """Let ``writer`` fill a temporary path, then publish it as ``target``."""
    with atomic_path(target, overwrite) as tmp:
        writer(tmp)
