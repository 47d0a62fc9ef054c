"""Correction: image files in, upright image files out.

Each image is predicted on a copy prepared like the training images (grey or colour,
squared and resized to the model input, scaled to [0, 1]); the original is rotated at
full resolution by minus the predicted angle and written atomically. Inputs are only
read. Decoding and encoding run in worker threads while the model works on batches,
and only a bounded window of images is in memory at once.

The prediction needs only a small view: a JPEG is first decoded at a DCT reduction
(``view_side``), and decoded whole only when it is to be turned (never in a dry run, nor
for a file copied through as kept-small or kept-unsure).
"""

from __future__ import annotations

import csv
import io
import math
import numbers
import os
import shutil
import struct
import tempfile
import zlib
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from upright import fileio, imagefiles
from upright.confidence import DEFAULT_MIN_CONFIDENCE, AngleBelief
from upright.errors import UserError
from upright.geometry import CANVAS_MODES, rotate_image, rotate_image_strips, rotation_matrix
from upright.imagefiles import (
    MAX_PIXELS,
    SKIPPED_SUFFIXES,
    SUFFIXES,
    DecodedImage,
    ImageFileError,
    decoded_bytes,
    encode_image,
    read_image,
)
from upright.models.model import ModelSpec
from upright.names import csv_cell, shown
from upright.pngstream import write_png
from upright.predictors import Predictor
from upright.prepare import CONVERTED_MODES, prepare_image

REPORT_CSV = "angles.csv"
REPORT_JSON = "angles.json"

# What the libraries raise on one bad file (or one the machine cannot hold): that file's
# row, and the batch goes on. Anything else is a bug in upright and stops the batch.
FILE_ERRORS = (OSError, ValueError, ArithmeticError, MemoryError, EOFError, SyntaxError,
               struct.error, zlib.error, cv2.error, Image.DecompressionBombError)


class OutputLocationError(UserError, ValueError):
    """The output folder would write into an input folder without permission, or cannot be
    written at all."""


class InputError(UserError, ValueError):
    """The inputs cannot be corrected as given (a file twice, two files onto one output)."""


@dataclass
class InputFile:
    path: Path
    relative: Path  # where it goes under the output folder


@dataclass
class Result:
    file: str
    angle: float | None
    # rotated | kept-small (needed less than --threshold) | kept-unsure (confidence below
    # --min-confidence) | predicted (dry run) | kept (the output existed) | failed | skipped
    action: str
    error: str = ""
    output: str = ""
    confidence: float | None = None  # None: the model has no distribution to say
    second_angle: float | None = None  # the runner-up mode, where one holds real mass
    second_mass: float | None = None


class Results(list):
    """The rows of a correction, in input order, where their report was written, and how
    many temporary files of a killed earlier run were removed."""

    report: Path | None = None
    stale_removed: int = 0


@dataclass
class CorrectOptions:
    canvas: str = "same"
    fill: tuple[int, ...] = (0, 0, 0)  # RGB or RGBA, 0-255
    threshold: float = 0.0  # |angle| below this: copy the file through untouched
    min_confidence: float = DEFAULT_MIN_CONFIDENCE  # below this: copy it through too
    dry_run: bool = False
    overwrite: bool = False
    allow_input_folder: bool = False
    jpeg_quality: int = 95
    batch_size: int = 32
    workers: int | None = None  # decode/encode threads; None: one more than the CPU count
    # Decoded bytes in flight (read, predicted, not yet written), counted twice for the
    # turned copy; one image bigger than this is corrected alone.
    memory_budget: int = 512 << 20

    def __post_init__(self) -> None:
        """The checks the command's flags make, for callers of the Python API: a bad value
        is one UserError before any output exists."""
        if self.canvas not in CANVAS_MODES:
            raise UserError(f"unknown canvas {self.canvas!r}; choose from {', '.join(CANVAS_MODES)}")
        self.fill = fill_rgb(self.fill)
        _check_number("threshold", self.threshold, 0.0)
        _check_number("min_confidence", self.min_confidence, 0.0, 1.0)
        _check_number("jpeg_quality", self.jpeg_quality, 1, 100, integer=True)
        _check_number("batch_size", self.batch_size, 1, integer=True)
        if self.workers is not None:
            _check_number("workers", self.workers, 1, 256, integer=True)
        _check_number("memory_budget", self.memory_budget, 1, integer=True)


def _check_number(name: str, value: Any, low: float, high: float | None = None,
                  integer: bool = False) -> None:
    kind = numbers.Integral if integer else numbers.Real  # numpy's numbers too
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, kind) or not math.isfinite(value) or (
            value < low or (high is not None and value > high)):
        span = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise UserError(f"{name} must be {'an integer' if integer else 'a number'} {span}, got {value!r}")


def fill_rgb(value: Any) -> tuple[int, ...]:
    """A fill colour as the API takes it (a name or text as ``parse_fill`` reads, one grey
    level, or an RGB triple or RGBA quadruple of 0-255) -> an RGB(A) tuple; UserError
    otherwise. Without an alpha the corners of an image with alpha are transparent."""
    if isinstance(value, str):
        try:
            return parse_fill(value)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    parts = [value] * 3 if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        colour = tuple(int(v) for v in parts)
        ok = len(colour) in (3, 4) and all(0 <= v <= 255 and v == p
                                           for v, p in zip(colour, parts, strict=True))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise UserError(f"not a fill colour: {value!r} (a name such as black or white, one grey level "
                        "0-255, or an RGB or RGBA tuple of 0-255)")
    return colour


def default_workers() -> int:
    # One more thread than cores: while one waits on the disk, the cores stay busy.
    return (os.cpu_count() or 1) + 1


@contextmanager
def _one_thread_per_task():
    """Parallelism comes from the worker threads (one file each); OpenCV's and torch's own
    thread pools on top of them would only fight over the same cores."""
    cv2_threads, torch_threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(cv2_threads)
        torch.set_num_threads(torch_threads)


def parse_fill(text: str) -> tuple[int, ...]:
    """'black', 'white', '128', '#ff8800', '255,128,0' -> an RGB triple; '#ff880080' or
    '255,128,0,128' -> RGBA (the alpha where the image has one; else transparent)."""
    named = {"black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128),
             "gray": (128, 128, 128)}
    text = text.strip().lower()
    try:
        if text in named:
            return named[text]
        if text.startswith("#") and len(text) in (7, 9):
            return tuple(int(text[i:i + 2], 16) for i in range(1, len(text), 2))
        parts = [int(float(p)) for p in text.split(",")]
    except (ValueError, OverflowError):  # OverflowError: inf
        parts = []
    if len(parts) == 1:
        parts *= 3
    if len(parts) not in (3, 4) or not all(0 <= p <= 255 for p in parts):
        raise ValueError(f"not a fill colour: {text!r} (try black, white, 128, #ff8800, 255,128,0 "
                         "or 255,128,0,255 with an alpha)")
    return tuple(parts)


def _sort_key(item: InputFile) -> tuple[str, ...]:
    return item.path.parts


def walk_inputs(paths: Sequence[str | Path], skip: Path | None = None
                ) -> tuple[list[InputFile], list[Result]]:
    """Files as given, and image files under folders (sorted), skipping ``skip``; plus a row
    for each thing found but not corrected (links to folders, broken links, GIFs).

    The walk keeps its own stack: a folder tree thousands of levels deep is walked, not a
    RecursionError. Symbolic links to folders are not followed (they can loop)."""
    found: list[InputFile] = []
    notes: list[Result] = []
    skip = skip.resolve() if skip else None
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            # An output folder nested inside the input is not walked (earlier outputs). It is
            # known by device and inode: resolving every folder of a deep tree costs n^2.
            root = path.resolve()
            nested = None
            if skip and skip != root and skip.is_relative_to(root) and skip.is_dir():
                nested = (skip.stat().st_dev, skip.stat().st_ino)
            stack = [path]
            walked: list[InputFile] = []
            while stack:
                folder = stack.pop()
                try:
                    entries = list(os.scandir(folder))
                except OSError as exc:
                    notes.append(Result(str(folder), None, "failed",
                                        f"{folder}: cannot list the folder ({exc.strerror or exc})"))
                    continue
                for entry in entries:
                    _visit(Path(entry.path), entry, path, nested, stack, walked, notes)
            found.extend(sorted(walked, key=_sort_key))
        elif path.is_file():
            if not fileio.is_temp_name(path.name):
                found.append(InputFile(path, Path(path.name)))
        else:
            raise FileNotFoundError(f"{shown(path)}: no such file or folder")
    notes.sort(key=lambda r: Path(r.file).parts)
    return found, notes


def _visit(path: Path, entry: os.DirEntry, root: Path, nested: tuple[int, int] | None, stack: list[Path],
           found: list[InputFile], notes: list[Result]) -> None:
    suffix = path.suffix.lower()
    try:
        if entry.is_symlink():
            if entry.is_dir():
                notes.append(Result(str(path), None, "skipped",
                                    f"{path}: symbolic link to a folder, not followed"))
                return
            if not path.exists():
                if suffix in SUFFIXES:
                    notes.append(Result(str(path), None, "failed", f"{path}: broken symbolic link"))
                return
        if entry.is_dir(follow_symlinks=False):
            if nested is None or (entry.stat().st_dev, entry.inode()) != nested:
                stack.append(path)
        elif suffix in SKIPPED_SUFFIXES:
            notes.append(Result(str(path), None, "skipped", f"{path}: {SKIPPED_SUFFIXES[suffix]}"))
        elif suffix in SUFFIXES and entry.is_file() and not fileio.is_temp_name(path.name):
            found.append(InputFile(path, path.relative_to(root)))
    except OSError as exc:
        notes.append(Result(str(path), None, "failed", f"{path}: {exc.strerror or exc}"))


def find_inputs(paths: Sequence[str | Path], skip: Path | None = None) -> list[InputFile]:
    """Files as given, and image files under folders (recursively, sorted), skipping ``skip``."""
    return walk_inputs(paths, skip)[0]


def check_inputs(files: Sequence[InputFile], outdir: Path | None) -> None:
    """Refuse, before any work, a file reached twice (given twice, or as a file and inside a
    folder) and two inputs that would be written to one output name."""
    seen: dict[Path, Path] = {}
    targets: dict[Path, Path] = {}
    for item in files:
        # The folder resolved, the name not: a link to a file is an input of its own.
        key = Path(os.path.realpath(item.path.parent)) / item.path.name
        if key in seen:
            raise InputError(f"{shown(item.path)}: given twice (also as {shown(seen[key])}); "
                             "name each file once")
        seen[key] = item.path
        if outdir is not None:
            if item.relative in targets:
                raise InputError(
                    f"{shown(outdir / item.relative)}: both {shown(targets[item.relative])} and "
                    f"{shown(item.path)} would be written there; correct them into separate "
                    "output folders")
            targets[item.relative] = item.path


def check_output_location(paths: Sequence[str | Path], outdir: Path, allowed: bool) -> None:
    """Refuse an output folder inside an input folder (or equal to a file input's folder)."""
    out = outdir.resolve()
    for raw in paths:
        path = Path(raw).resolve()
        folder = path if path.is_dir() else path.parent
        inside = out.is_relative_to(folder) if path.is_dir() else out == folder
        if inside and not allowed:
            raise OutputLocationError(
                f"{shown(outdir)}: is inside the input folder {shown(folder)}; pass "
                "--allow-input-folder to write there (inputs are still never overwritten)")


def check_writable(outdir: Path) -> None:
    """Make the output folder and prove a file can be made there, before any work."""
    try:
        fileio.make_dirs(outdir)
        fd, name = tempfile.mkstemp(prefix=fileio.TEMP_PREFIX, suffix=fileio.TEMP_SUFFIX, dir=outdir)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise OutputLocationError(f"{shown(outdir)}: cannot write there ({exc.strerror or exc})") from exc


# A prediction view keeps at least this many pixels per model input pixel along its short
# side, so the area-average down to the model's size still works from a real neighbourhood.
VIEW_MARGIN = 2


def view_side(spec: ModelSpec) -> int:
    """The short side a view needs for predicting with ``spec`` (``read_image``'s ``min_side``)."""
    return VIEW_MARGIN * max(spec.height, spec.width)


def model_input(pixels: np.ndarray, spec: ModelSpec, mode: str | None = None) -> np.ndarray:
    """Decoded pixels as the model takes them: (C, H, W) float32 in [0, 1], prepared by
    ``upright.prepare.prepare_image`` exactly as folder training prepared its images."""
    x = prepare_image(pixels, spec.height, spec.width, spec.channels, spec.aspect, mode,
                      frame=spec.framing != "none")
    x = x.astype(np.float32) / 255.0
    return np.ascontiguousarray((x[:, :, None] if x.ndim == 2 else x).transpose(2, 0, 1))


def _fill_for(decoded: DecodedImage, fill: tuple[int, ...]) -> tuple[float, ...]:
    scale = 257 if decoded.pixels.dtype == np.uint16 else 1
    pixels = decoded.pixels
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    alpha = fill[3] * scale if len(fill) == 4 else 0  # transparent corners unless told
    if decoded.mode == "CMYK":  # black as K alone, as printers want it
        c, m, y = (255 - v for v in fill[:3])
        k = min(c, m, y)
        return (c - k, m - k, y - k, k)
    if decoded.mode in CONVERTED_MODES:
        # The stored bytes, as the pixels hold them (getpixel adds 128 to LAB's signed a and b).
        return tuple(Image.new("RGB", (1, 1), tuple(fill[:3])).convert(decoded.mode).tobytes())
    if channels in (1, 2):
        grey = round(0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]) * scale
        return (grey, alpha) if channels == 2 else (grey,)
    colour = tuple(v * scale for v in fill[:3])
    return colour + (alpha,) if channels == 4 else colour


@dataclass
class _Loaded:
    index: int
    item: InputFile
    decoded: DecodedImage | None  # None once written: its pixels are freed
    x: np.ndarray


def _finite_or_none(value: float) -> float | None:
    return round(float(value), 4) if np.isfinite(value) else None


def _in_the_way(target: Path, inputs: set[Path]) -> str | None:
    """Why an existing ``target`` is no earlier output to keep (None where it may be one):
    an input file itself (the output folder is the input's), a folder, a broken link."""
    if not os.path.lexists(target):
        return None
    if target.resolve() in inputs:
        return "is an input file; inputs are never overwritten"
    if target.is_dir():
        return "a folder is in the way of this output"
    if not target.exists():
        return "a broken link is in the way of this output"
    return None


def failure_text(path: Path, exc: BaseException) -> str:
    """One line that names the file and the problem."""
    if isinstance(exc, ImageFileError):
        return str(exc)  # already starts with the path
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else path
        return f"{where}: {exc.strerror}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    kind = "OpenCV" if isinstance(exc, cv2.error) else type(exc).__name__
    return f"{path}: {kind}: {text}" if text else f"{path}: {kind}"


def _check_canvas(decoded: DecodedImage, angle: float, canvas: str, path: Path | str) -> None:
    height, width = decoded.pixels.shape[:2]
    _, (out_w, out_h) = rotation_matrix(angle, width, height, canvas)
    if out_w * out_h > MAX_PIXELS:
        raise ImageFileError(f"{path}: the {canvas} canvas would be {out_w}x{out_h} pixels, over "
                             f"the limit of {MAX_PIXELS:,}")


def turned_pixels(decoded: DecodedImage, angle: float, canvas: str, fill: tuple[int, ...],
                  path: Path | str = "image") -> np.ndarray:
    """The decoded image turned by ``angle`` on the ``canvas``, corners in ``fill`` (RGB,
    given in the image's own mode); a canvas over the pixel limit is an ImageFileError."""
    _check_canvas(decoded, angle, canvas, path)
    return rotate_image(decoded.pixels, angle, canvas=canvas, fill=_fill_for(decoded, fill))


def _streamed(decoded: DecodedImage) -> bool:
    return (decoded.format == "PNG" and decoded.pixels.nbytes >= imagefiles.BIG_BYTES
            and decoded.mode in ("L", "LA", "RGB", "RGBA", "RGB;16", "I;16"))


def _write_png_file(path: Path, size: tuple[int, int], strips, decoded: DecodedImage) -> None:
    with open(path, "wb") as out:
        write_png(out, size, strips, decoded.metadata)


class _Budget:
    """Bytes held by the images between decoding and writing (the main thread's books):
    the decode window grows while they fit, and one image alone is always let in."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used, self.held = limit, 0, {}

    def admits(self, cost: int) -> bool:
        return self.used == 0 or self.used + cost <= self.limit

    def take(self, index: int, cost: int) -> None:
        self.held[index] = cost
        self.used += cost

    def release(self, index: int) -> None:
        self.used -= self.held.pop(index, 0)


def correct_paths(paths: Sequence[str | Path], predictor: Predictor, outdir: str | Path | None,
                  options: CorrectOptions | None = None, progress: bool = False) -> Results:
    """Correct every image under ``paths`` into ``outdir``; writes angles.csv and angles.json
    (numbered angles-2.csv ... when a report exists and ``options.overwrite`` is off).

    A file that cannot be read, predicted, turned or written is a row; an error in upright
    itself (or an interrupt) stops the batch after writing the report of the rows done."""
    options = options or CorrectOptions()  # (whose values are checked when it is made)
    if outdir is None and not options.dry_run:
        raise InputError("an output folder is needed unless --dry-run")
    outdir = Path(outdir) if outdir is not None else None
    if outdir is not None:  # reports are written there in a dry run too
        check_output_location(paths, outdir, options.allow_input_folder)
    files, notes = walk_inputs(paths, skip=outdir)
    check_inputs(files, None if options.dry_run else outdir)
    if outdir is not None:
        check_writable(outdir)
    inputs = {f.path.resolve() for f in files}
    stale = 0
    if outdir is not None and not options.dry_run:
        # Temporary files a killed run left where this one writes (live ones are locked).
        for folder in sorted({(outdir / f.relative).parent for f in files} | {outdir}):
            stale += fileio.remove_stale_temps(folder)
    results: list[Result | None] = [None] * len(files)
    # A rerun: an output that already exists is kept without decoding its input again.
    todo: list[tuple[int, InputFile]] = []
    for index, item in enumerate(files):
        target = None if options.dry_run or options.overwrite else outdir / item.relative
        in_the_way = _in_the_way(target, inputs) if target is not None else None
        if in_the_way:
            results[index] = Result(str(item.path), None, "failed", error=f"{target}: {in_the_way}")
        elif target is not None and os.path.lexists(target):
            results[index] = Result(str(item.path), None, "kept", output=str(target))
        else:
            todo.append((index, item))
    spec = predictor.spec
    side = view_side(spec)

    def load(index: int, item: InputFile) -> _Loaded:
        decoded = read_image(item.path, min_side=side)
        return _Loaded(index, item, decoded, model_input(decoded.pixels, spec, decoded.mode))

    def finish(loaded: _Loaded, angle: float, belief: tuple[float, float, float]) -> Result:
        try:
            return write(loaded, angle, belief)
        finally:
            # Free the pixels now, before the budget is released: the pool's work item keeps
            # ``loaded`` alive a moment longer.
            loaded.decoded = None

    def write(loaded: _Loaded, angle: float, belief: tuple[float, float, float]) -> Result:
        src = loaded.item.path
        angle = round(float(angle), 3)
        confidence, second_angle, second_mass = (_finite_or_none(v) for v in belief)
        if second_angle is None:
            second_mass = None

        def row(action: str, **extra) -> Result:
            return Result(str(src), angle, action, confidence=confidence, second_angle=second_angle,
                          second_mass=second_mass, **extra)

        unsure = confidence is not None and confidence < options.min_confidence
        small = abs(angle) < options.threshold
        if options.dry_run:
            return row("kept-unsure" if unsure else "kept-small" if small else "predicted")
        target = outdir / loaded.item.relative
        try:
            if target.resolve() in inputs:
                raise FileExistsError(f"{target}: is an input file; inputs are never overwritten")
            if unsure or small:
                fileio.write_with(target, lambda tmp: shutil.copyfile(src, tmp), options.overwrite)
                return row("kept-unsure" if unsure else "kept-small", output=str(target))
            if loaded.decoded.scale != 1:  # a prediction view: the whole image only now, to turn
                loaded.decoded = None  # the view goes before the whole image comes
                loaded.decoded = read_image(src)
            decoded = loaded.decoded
            if _streamed(decoded):  # never a second full-size image in memory
                _check_canvas(decoded, -angle, options.canvas, src)
                size, strips = rotate_image_strips(decoded.pixels, -angle, options.canvas,
                                                   _fill_for(decoded, options.fill))
                fileio.write_with(target, lambda tmp: _write_png_file(tmp, size, strips, decoded),
                                  options.overwrite)
                return row("rotated", output=str(target))
            rotated = turned_pixels(decoded, -angle, options.canvas, options.fill, src)
            data = encode_image(decoded, rotated, options.jpeg_quality)
            del rotated
            fileio.write_bytes(target, data, options.overwrite)
            return row("rotated", output=str(target))
        except FILE_ERRORS as exc:
            return row("failed", error=failure_text(src, exc))

    def done_rows() -> Results:
        return Results([r for r in results if r is not None] + notes)

    window = max(2 * options.batch_size, 4)
    workers = options.workers or default_workers()
    writes: list[Future] = []

    budget = _Budget(options.memory_budget)

    def record(indexed: tuple[int, Result]) -> None:
        results[indexed[0]] = indexed[1]
        budget.release(indexed[0])
        bar.update(1)

    def cost(path: Path) -> int:
        # A dry run holds only its views; a full run the whole image and its turned copy.
        return decoded_bytes(path, side) if options.dry_run else 2 * decoded_bytes(path)

    try:
        with _one_thread_per_task(), ThreadPoolExecutor(max_workers=workers) as pool, \
                tqdm(total=len(files), initial=len(files) - len(todo), desc="correct", unit="img",
                     disable=not progress) as bar:
            try:
                _run(todo, pool, window, budget, cost, options.batch_size, load, finish, predictor,
                     record, writes)
            except BaseException as exc:
                if isinstance(exc, Exception):  # a bug: files already predicted are still written
                    wait(writes)
                # Stop promptly: the rest of the queue is dropped, work under way finishes.
                pool.shutdown(wait=True, cancel_futures=True)
                for future in writes:
                    if future.done() and not future.cancelled() and future.exception() is None:
                        record(future.result())
                raise
    except BaseException:
        if outdir is not None:
            write_report(done_rows(), outdir, options.overwrite)
        raise
    final = done_rows()
    final.stale_removed = stale
    if outdir is not None:
        final.report = write_report(final, outdir, options.overwrite)
    return final


def _run(files: Sequence[tuple[int, InputFile]], pool: ThreadPoolExecutor, window: int, budget: _Budget,
         cost_of, batch_size: int, load, finish, predictor: Predictor, record, writes: list[Future]) -> None:
    """Decode ahead in a window bounded by count and by decoded bytes, predict in batches,
    write the previous batch's files while the next one decodes."""
    queue: deque[tuple[int, InputFile, Future]] = deque()
    todo = iter(files)
    upcoming: tuple[int, InputFile, int] | None = None  # the next file and its cost

    def top_up() -> None:
        nonlocal upcoming
        while len(queue) < window:
            if upcoming is None:
                nxt = next(todo, None)
                if nxt is None:
                    return
                upcoming = (*nxt, cost_of(nxt[1].path))
            index, item, cost = upcoming
            if not budget.admits(cost):
                return
            budget.take(index, cost)
            queue.append((index, item, pool.submit(load, index, item)))
            upcoming = None

    def drain_writes() -> None:
        for done in writes:
            record(done.result())
        writes.clear()

    def flush(batch: list[_Loaded]) -> None:
        stack = np.stack([b.x for b in batch])
        # Any object with predict() is a predictor; one without predict_belief has no confidence.
        belief = (predictor.predict_belief(stack) if hasattr(predictor, "predict_belief")
                  else AngleBelief.without_confidence(predictor.predict(stack)))
        drain_writes()  # the previous batch's: bounds memory to two batches
        for i, b in enumerate(batch):
            angle = belief.angle[i]
            if not np.isfinite(angle):  # a broken model: no angle is better than a made-up one
                b.decoded = None
                record((b.index, Result(str(b.item.path), None, "failed",
                                        f"{b.item.path}: the model gave no angle ({angle})")))
                continue
            extra = (belief.confidence[i], belief.second_angle[i], belief.second_mass[i])
            writes.append(pool.submit(lambda b, a, e: (b.index, finish(b, a, e)), b, angle, extra))

    batch: list[_Loaded] = []
    while True:
        top_up()
        if not queue:  # all read, or the budget is held by images waiting to be finished
            if batch:
                flush(batch)
                batch = []
            elif writes:
                drain_writes()
            else:
                return
            continue
        index, item, future = queue.popleft()
        try:
            batch.append(future.result())
        except FILE_ERRORS as exc:
            record((index, Result(str(item.path), None, "failed", failure_text(item.path, exc))))
        if len(batch) >= batch_size:
            flush(batch)
            batch = []


def _report_names(outdir: Path, overwrite: bool):
    yield outdir / REPORT_CSV, outdir / REPORT_JSON
    if overwrite:
        return
    stem_csv, stem_json = Path(REPORT_CSV).stem, Path(REPORT_JSON).stem
    for n in range(2, 10_000):
        yield outdir / f"{stem_csv}-{n}.csv", outdir / f"{stem_json}-{n}.json"


def write_report(results: Sequence[Result], outdir: Path, overwrite: bool = True) -> Path:
    """angles.csv and angles.json; without ``overwrite`` an earlier report is kept and this
    one numbered (angles-2.csv, ...). Names are written as ``upright.names.shown`` gives
    them, the same in both files; CSV text cells cannot start a spreadsheet formula."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "angle", "confidence", "second_angle", "second_mass", "action", "error"])
    rows = [{**asdict(r), "file": shown(r.file), "error": shown(r.error), "output": shown(r.output)}
            for r in results]

    def number(value: float | None, digits: int) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    for r in rows:
        writer.writerow([csv_cell(r["file"]), number(r["angle"], 3), number(r["confidence"], 3),
                         number(r["second_angle"], 1), number(r["second_mass"], 3), r["action"],
                         csv_cell(r["error"])])
    for csv_path, json_path in _report_names(outdir, overwrite):
        if not overwrite and (csv_path.exists() or json_path.exists()):
            continue
        try:
            fileio.write_text(csv_path, buffer.getvalue(), overwrite)
            fileio.write_json(json_path, rows, overwrite, strict=True)
        except FileExistsError:  # another process took the name meanwhile
            continue
        return csv_path
    raise FileExistsError(f"{shown(outdir)}: no free report name left")
