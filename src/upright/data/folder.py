"""A folder of the user's own upright images, as a source (split by file).

A folder is read into memory when its prepared images fit (``cache``), or streamed: the
source then holds the file list, and training reads and prepares each batch's files in
DataLoader workers, so a folder larger than memory trains in bounded memory. Either way a
file is read by ``upright.imagefiles.read_image`` and prepared by ``prepare_image``, exactly
as correction does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from upright.data.source import SourceData
from upright.data.workers import worker_options
from upright.errors import DatasetError
from upright.prepare import ASPECT_POLICIES, prepare_image

COLOUR_MODES = {"grey": 1, "rgb": 3}  # -> channels
CACHE_POLICIES = ("auto", "on", "off")
LOAD_CHUNK = 256  # files per work item when a folder is read into memory
# A worker process takes ~2 s to start (it imports torch and OpenCV) and a chunk ~0.3-1 s to
# read: below this many chunks per worker, this process reads them sooner.
CHUNKS_PER_WORKER = 4


class FolderError(DatasetError):
    """The folder holds no usable image."""


def _prepare(path: Path, size: int, aspect: str, colour: str) -> np.ndarray:
    """The file as correction reads it (upright.imagefiles), prepared by the same function."""
    from upright.imagefiles import read_image  # here: OpenCV only once a folder is read

    decoded = read_image(path)
    return prepare_image(decoded.pixels, size, size, COLOUR_MODES[colour], aspect, decoded.mode)


def _problem(file: str, exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if text.startswith(file) else f"{file} ({text})"


def warn_skipped(problems: list[str]) -> None:
    if problems:
        print(f"upright: warning: skipped {len(problems)} unreadable file(s): {'; '.join(problems)}",
              file=sys.stderr)


class FolderImages:
    """Image files prepared on demand: indexing gives another ``FolderImages`` (nothing is
    read); ``read`` and ``load`` decode. Stands where a source's image array would."""

    dtype = np.dtype(np.uint8)

    def __init__(self, files: np.ndarray, size: int, aspect: str, colour: str) -> None:
        self.files = np.asarray(files, dtype=str)
        self.size, self.aspect, self.colour = size, aspect, colour
        self._warned: set[str] = set()  # per process: a bad file is named once, not every epoch

    @property
    def shape(self) -> tuple[int, ...]:
        channels = COLOUR_MODES[self.colour]
        return (len(self), self.size, self.size) + ((channels,) if channels > 1 else ())

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index) -> FolderImages:
        return FolderImages(self.files[index], self.size, self.aspect, self.colour)

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The prepared images of ``files[indices]`` that could be read, and a mask of which
        could. A file that cannot is named once on stderr and left out."""
        pixels, readable, problems = self._read(indices)
        fresh = [p for p in problems if p not in self._warned]
        self._warned.update(fresh)
        warn_skipped(fresh)
        return pixels, readable

    def _read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        images, readable, problems = [], np.zeros(len(indices), dtype=bool), []
        for k, i in enumerate(indices):
            file = str(self.files[i])
            try:
                images.append(_prepare(Path(file), self.size, self.aspect, self.colour))
                readable[k] = True
            except (OSError, ValueError) as exc:  # ImageFileError names the file and the problem
                problems.append(_problem(file, exc))
        empty = np.zeros((0, *self.shape[1:]), np.uint8)
        return (np.stack(images) if images else empty), readable, problems

    def load(self, workers: int = 0, already_skipped: list[str] | None = None
             ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Every image, read by ``workers`` processes (0: this one), in file order, with a
        mask of which could be read: a file that cannot holds a blank image in its place
        (its index stays its file's) and is named in one warning (with ``already_skipped``,
        found before); the list says why."""
        import torch
        from tqdm import tqdm

        chunks = _Chunks(self)
        workers = min(workers, len(chunks) // CHUNKS_PER_WORKER)
        loader = torch.utils.data.DataLoader(chunks, batch_size=None, num_workers=workers,
                                             collate_fn=_as_is, **worker_options(workers))
        images = np.zeros(self.shape, np.uint8)
        readable = np.zeros(len(self), dtype=bool)
        problems = list(already_skipped or [])
        start = 0  # (DataLoader hands the chunks back in order, workers or not)
        for pixels, read, found in tqdm(loader, total=len(chunks), desc="reading the folder",
                                        unit="chunk", leave=False, disable=len(self) < 20 * LOAD_CHUNK):
            stop = start + len(read)
            images[start:stop][read] = pixels
            readable[start:stop] = read
            problems += found
            start = stop
        warn_skipped(problems)
        return images, readable, problems


def _as_is(item):
    return item


class _Chunks:
    """A folder's files in chunks of LOAD_CHUNK, as DataLoader work items."""

    def __init__(self, images: FolderImages) -> None:
        self.images = images
        self.size = LOAD_CHUNK  # read here: a worker's fresh import would not see a change

    def __len__(self) -> int:
        return -(-len(self.images) // self.size)

    def __getitem__(self, k: int):
        stop = min(len(self.images), (k + 1) * self.size)
        return self.images._read(np.arange(k * self.size, stop))


def _identifiable(files: list[Path]) -> tuple[list[Path], list[str]]:
    """The files whose header shows an image upright reads (cheap: nothing is decoded),
    and why each other one is not."""
    from upright.imagefiles import ImageFileError, identify  # here: OpenCV only once a folder is read

    kept, problems = [], []
    for file in files:
        try:
            identify(file)
            kept.append(file)
        except ImageFileError as exc:
            problems.append(_problem(str(file), exc))
    return kept, problems


def available_memory() -> int | None:
    """Bytes of memory free for use now (Linux: MemAvailable), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def keeps_in_memory(cache: str, files: int, size: int, colour: str) -> bool:
    """``cache`` on/off, or auto: on when the prepared images take at most a quarter of the
    free memory."""
    if cache != "auto":
        return cache == "on"
    free = available_memory()
    return free is None or files * size * size * COLOUR_MODES[colour] <= free // 4


def load_folder(path: str, image_size: int = 64, aspect: str = "crop", colour: str = "grey",
                test_fraction: float = 0.2, seed: int = 0, cache: str = "on", workers: int = 0,
                **_: object) -> SourceData:
    """Every readable image under ``path`` (recursively), squared and resized to
    ``image_size``; a seeded ``test_fraction`` of the files is the test split. With
    ``cache`` on the images are read into memory (``workers`` processes); off, they stay
    files (see ``FolderImages``). Unreadable files are skipped with one warning naming
    each. Nothing is written."""
    if aspect not in ASPECT_POLICIES:
        raise ValueError(f"aspect must be one of {ASPECT_POLICIES}, got {aspect!r}")
    if colour not in COLOUR_MODES:
        raise ValueError(f"colour must be one of {COLOUR_MODES}, got {colour!r}")
    if cache not in CACHE_POLICIES:
        raise ValueError(f"cache must be one of {CACHE_POLICIES}, got {cache!r}")
    root = Path(path)
    if not root.is_dir():
        raise FolderError(f"{root}: not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    # A link to nothing is no image, but named like one it was meant to be: said, not passed over.
    broken = [f"{p} (a broken link)" for p in sorted(root.rglob("*"))
              if p.is_symlink() and not p.exists()]
    files, problems = _identifiable(files)
    skipped = broken + problems
    # The splits are drawn over the files whose header reads, in either mode: a file whose
    # pixels are damaged is found only when read, and were the splits drawn after the
    # in-memory read left it out, the two modes would train, validate and test on
    # different files (and evaluate, which checks the splits, would refuse a run read the
    # other way). In memory it keeps its place as a blank marked unreadable, which
    # split_source leaves out after the draw; streamed, it leaves when first read.
    # Two files or fewer are too few to test on: all of it trains (counted over the files
    # listed, as streaming must, so both ways split alike).
    is_test = np.zeros(len(files), dtype=bool)
    n_test = int(round(test_fraction * len(files))) if len(files) > 2 else 0
    is_test[np.random.default_rng(seed).permutation(len(files))[:n_test]] = True
    images = FolderImages(np.array(files, dtype=str), image_size, aspect, colour)
    unreadable = None
    if keeps_in_memory(cache, len(files), image_size, colour):
        images, readable, skipped = images.load(workers, already_skipped=skipped)
        unreadable = ~readable
    else:
        warn_skipped(skipped)
    if not len(images) or (unreadable is not None and unreadable.all()):
        raise FolderError(f"{root}: no readable image (PNG, JPEG, BMP, TIFF or WebP) found")
    return SourceData(name=f"folder:{root}", images=images, groups=np.arange(len(images)),
                      is_test=is_test, group_kind="file", skipped=skipped, unreadable=unreadable)
