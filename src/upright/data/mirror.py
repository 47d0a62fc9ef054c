"""Fetching dataset files: a local mirror folder, else a verified cache, else a download.

The mirror (environment variable ``UPRIGHT_DATA_MIRROR``) is a folder holding
``<dataset>/<file>`` (or ``<file>``) exactly as the usual hosts serve them; it is how
machines without internet get the data. Everything is verified on its *decoded*
content, so mirrors with other compression wrappers still match.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from upright.errors import UserError

MIRROR_ENV = "UPRIGHT_DATA_MIRROR"
CACHE_ENV = "UPRIGHT_CACHE_DIR"
DOWNLOAD_TIMEOUT_S = 30


class DataUnavailableError(UserError, RuntimeError):
    """A dataset file could not be found, downloaded or verified."""


def cache_dir() -> Path:
    """The download cache: $UPRIGHT_CACHE_DIR, else $XDG_CACHE_HOME/upright, else ~/.cache/upright."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "upright"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _decode_and_verify(path: Path, decode: Callable[[bytes], tuple[Any, bytes]],
                       sha256: str | Sequence[str]) -> Any:
    expected = {sha256} if isinstance(sha256, str) else set(sha256)
    try:
        value, content = decode(path.read_bytes())
    except Exception as exc:  # a broken file must name itself, whatever the parser raised
        raise DataUnavailableError(f"{path}: cannot be decoded ({exc})") from exc
    digest = _sha256(content)
    if digest not in expected:
        raise DataUnavailableError(
            f"{path}: checksum mismatch (decoded content sha256 {digest}, expected "
            f"{' or '.join(sorted(expected))}); delete it and fetch the file again"
        )
    return value


def _download(url: str, target: Path) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "upright-dataset-fetcher"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with open(target, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                              desc=f"download {target.name.split('.part')[0]}",
                                              leave=False) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def fetch(
    dataset: str,
    filename: str,
    urls: Sequence[str],
    sha256: str | Sequence[str],
    decode: Callable[[bytes], tuple[Any, bytes]],
    all_files: Sequence[str] | None = None,
) -> Any:
    """Return the decoded content of ``filename`` of ``dataset``, verified by sha256.

    ``decode`` turns the raw file bytes into (value, bytes whose sha256 is checked).
    Order: mirror folder (if the environment names one), cache, download into the
    cache (atomically: a file that fails to download or verify leaves nothing behind).
    """
    needed = ", ".join(all_files or [filename])
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        candidates = [Path(mirror) / dataset / filename, Path(mirror) / filename]
        for path in candidates:
            if path.is_file():
                return _decode_and_verify(path, decode, sha256)
        raise DataUnavailableError(
            f"{dataset}: {filename} is not in the mirror folder {mirror} (looked for "
            f"{candidates[0]}); put {needed} there or unset {MIRROR_ENV} to download"
        )

    folder = cache_dir() / dataset
    cached = folder / filename
    if cached.is_file():
        return _decode_and_verify(cached, decode, sha256)

    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f"{filename}.", suffix=".part", dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _download(url, tmp)
            value = _decode_and_verify(tmp, decode, sha256)
            shutil.move(str(tmp), cached)  # same folder: an atomic rename
            return value
        except (OSError, DataUnavailableError, ValueError) as exc:
            errors.append(f"{url}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataUnavailableError(
        f"{dataset}: could not get {filename} ({'; '.join(errors)}). Download {needed} from "
        f"one of {', '.join(sorted({u.rsplit('/', 1)[0] + '/' for u in urls}))} into {folder}/, "
        f"or set {MIRROR_ENV} to a folder that holds {dataset}/{filename}"
    )
