"""Correction: image files in, upright image files out.

Each image is predicted on a copy prepared like the training images (grey or colour,
squared and resized to the model input, scaled to [0, 1]); the original is rotated at
full resolution by minus the predicted angle and written atomically. Inputs are only
read. Decoding and encoding run in worker threads while the model works on batches,
and only a bounded window of images is in memory at once.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from upright import fileio
from upright.geometry import CANVAS_MODES, rotate_image
from upright.imagefiles import SUFFIXES, DecodedImage, ImageFileError, encode_image, read_image
from upright.models.model import ModelSpec
from upright.predictors import Predictor

REPORT_CSV = "angles.csv"
REPORT_JSON = "angles.json"

class OutputLocationError(ValueError):
    """The output folder would write into an input folder without permission."""


@dataclass
class InputFile:
    path: Path
    relative: Path  # where it goes under the output folder


@dataclass
class Result:
    file: str
    angle: float | None
    action: str  # rotated | unchanged | predicted | failed
    error: str = ""
    output: str = ""


@dataclass
class CorrectOptions:
    canvas: str = "same"
    fill: tuple[int, ...] = (0, 0, 0)  # RGB, 0-255
    threshold: float = 0.0  # |angle| below this: copy the file through untouched
    dry_run: bool = False
    overwrite: bool = False
    allow_input_folder: bool = False
    jpeg_quality: int = 95
    batch_size: int = 32
    workers: int | None = None  # decode/encode threads; None: one more than the CPU count


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


def parse_fill(text: str) -> tuple[int, int, int]:
    """'black', 'white', '128', '#ff8800' or '255,128,0' -> an RGB triple."""
    named = {"black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128),
             "gray": (128, 128, 128)}
    text = text.strip().lower()
    try:
        if text in named:
            return named[text]
        if text.startswith("#") and len(text) == 7:
            return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        parts = [int(float(p)) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or not all(0 <= p <= 255 for p in parts):
        raise ValueError(f"not a fill colour: {text!r} (try black, white, 128, #ff8800 or 255,128,0)")
    return tuple(parts)  # type: ignore[return-value]


def find_inputs(paths: Sequence[str | Path], skip: Path | None = None) -> list[InputFile]:
    """Files as given, and image files under folders (recursively, sorted), skipping ``skip``."""
    found: list[InputFile] = []
    skip = skip.resolve() if skip else None
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            # An output folder nested inside the input is not walked (earlier outputs).
            nested = skip if skip and skip != path.resolve() else None
            for file in sorted(path.rglob("*")):
                if not file.is_file() or file.suffix.lower() not in SUFFIXES:
                    continue
                if nested and file.resolve().is_relative_to(nested):
                    continue
                found.append(InputFile(file, file.relative_to(path)))
        elif path.is_file():
            found.append(InputFile(path, Path(path.name)))
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return found


def check_output_location(paths: Sequence[str | Path], outdir: Path, allowed: bool) -> None:
    """Refuse an output folder inside an input folder (or equal to a file input's folder)."""
    out = outdir.resolve()
    for raw in paths:
        path = Path(raw).resolve()
        folder = path if path.is_dir() else path.parent
        inside = out.is_relative_to(folder) if path.is_dir() else out == folder
        if inside and not allowed:
            raise OutputLocationError(
                f"{outdir}: is inside the input folder {folder}; pass --allow-input-folder "
                "to write there (inputs are still never overwritten)")


def model_input(pixels: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Prepare decoded pixels like the training images: (C, H, W) float32 in [0, 1]."""
    x = pixels
    if x.ndim == 3 and x.shape[2] in (2, 4):  # drop alpha
        x = x[:, :, : x.shape[2] - 1]
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[:, :, 0]
    h, w = x.shape[:2]
    if h != w:  # square it the way folder training does: centre crop or pad
        side = min(h, w) if spec.aspect == "crop" else max(h, w)
        if spec.aspect == "crop":
            top, left = (h - side) // 2, (w - side) // 2
            x = x[top:top + side, left:left + side]
        else:
            pad = [((side - h) // 2, side - h - (side - h) // 2),
                   ((side - w) // 2, side - w - (side - w) // 2)] + [(0, 0)] * (x.ndim - 2)
            x = np.pad(x, pad)
    # Shrink before anything else: a 24-megapixel photo becomes a thumbnail first.
    interp = cv2.INTER_AREA if x.shape[0] > spec.height else cv2.INTER_LINEAR
    x = cv2.resize(np.ascontiguousarray(x), (spec.width, spec.height), interpolation=interp)
    x = x.astype(np.float32) / (65535.0 if pixels.dtype == np.uint16 else 255.0)
    if spec.channels == 1 and x.ndim == 3:
        x = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)
    elif spec.channels == 3 and x.ndim == 2:
        x = np.repeat(x[:, :, None], 3, axis=2)
    if x.ndim == 2:
        x = x[:, :, None]
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def _fill_for(decoded: DecodedImage, fill: tuple[int, ...]) -> tuple[float, ...]:
    scale = 257 if decoded.pixels.dtype == np.uint16 else 1
    pixels = decoded.pixels
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if decoded.mode == "CMYK":
        c, m, y = (255 - v for v in fill)
        k = min(c, m, y)
        return (c - k, m - k, y - k, k)
    if channels in (1, 2):
        grey = round(0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]) * scale
        return (grey, 0) if channels == 2 else (grey,)  # fill is transparent where alpha exists
    colour = tuple(v * scale for v in fill[:3])
    return colour + (0,) if channels == 4 else colour


@dataclass
class _Loaded:
    index: int
    item: InputFile
    decoded: DecodedImage
    x: np.ndarray


def correct_paths(paths: Sequence[str | Path], predictor: Predictor, outdir: str | Path | None,
                  options: CorrectOptions | None = None, progress: bool = False) -> list[Result]:
    """Correct every image under ``paths`` into ``outdir``; writes angles.csv and angles.json."""
    options = options or CorrectOptions()
    if options.canvas not in CANVAS_MODES:
        raise ValueError(f"unknown canvas {options.canvas!r}; choose from {', '.join(CANVAS_MODES)}")
    if outdir is None and not options.dry_run:
        raise ValueError("an output folder is needed unless --dry-run")
    outdir = Path(outdir) if outdir is not None else None
    if outdir is not None and not options.dry_run:
        check_output_location(paths, outdir, options.allow_input_folder)
    files = find_inputs(paths, skip=outdir)
    inputs = {f.path.resolve() for f in files}
    results: list[Result | None] = [None] * len(files)
    spec = predictor.spec

    def load(index: int, item: InputFile) -> _Loaded:
        decoded = read_image(item.path)
        return _Loaded(index, item, decoded, model_input(decoded.pixels, spec))

    def finish(loaded: _Loaded, angle: float) -> Result:
        src = loaded.item.path
        angle = round(float(angle), 3)
        if options.dry_run:
            return Result(str(src), angle, "predicted")
        target = outdir / loaded.item.relative
        try:
            if target.resolve() in inputs:
                raise FileExistsError(f"{target}: is an input file; inputs are never overwritten")
            if target.exists() and not options.overwrite:
                raise FileExistsError(f"{target}: exists (use --overwrite to replace it)")
            if abs(angle) < options.threshold:
                fileio.write_with(target, lambda tmp: shutil.copyfile(src, tmp))
                return Result(str(src), angle, "unchanged", output=str(target))
            rotated = rotate_image(loaded.decoded.pixels, -angle, canvas=options.canvas,
                                   fill=_fill_for(loaded.decoded, options.fill))
            data = encode_image(loaded.decoded, rotated, options.jpeg_quality)
            fileio.write_bytes(target, data)
            return Result(str(src), angle, "rotated", output=str(target))
        except (OSError, ValueError) as exc:
            return Result(str(src), angle, "failed", str(exc).splitlines()[0])

    window = max(2 * options.batch_size, 4)
    workers = options.workers or default_workers()
    with _one_thread_per_task(), ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(files), desc="correct", unit="img", disable=not progress) as bar:
        queue: deque[tuple[int, InputFile, Future]] = deque()
        todo = iter(enumerate(files))
        writes: list[Future] = []

        def top_up() -> None:
            while len(queue) < window:
                nxt = next(todo, None)
                if nxt is None:
                    return
                queue.append((nxt[0], nxt[1], pool.submit(load, *nxt)))

        def flush(batch: list[_Loaded]) -> None:
            nonlocal writes
            angles = predictor.predict(np.stack([b.x for b in batch]))
            for done in writes:  # the previous batch's writes: bounds memory to two batches
                _record(done.result())
            writes = [pool.submit(lambda b, a: (b.index, finish(b, a)), b, a)
                      for b, a in zip(batch, angles, strict=True)]

        def _record(indexed: tuple[int, Result]) -> None:
            results[indexed[0]] = indexed[1]
            bar.update(1)

        top_up()
        batch: list[_Loaded] = []
        while queue:
            index, item, future = queue.popleft()
            top_up()
            try:
                batch.append(future.result())
            except ImageFileError as exc:
                _record((index, Result(str(item.path), None, "failed", str(exc))))
            if len(batch) >= options.batch_size:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
        for done in writes:
            _record(done.result())
    final = [r for r in results if r is not None]
    if outdir is not None:
        write_report(final, outdir)
    return final


def write_report(results: Sequence[Result], outdir: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "angle", "action", "error"])
    for r in results:
        writer.writerow([r.file, "" if r.angle is None else f"{r.angle:.3f}", r.action, r.error])
    fileio.write_text(outdir / REPORT_CSV, buffer.getvalue())
    fileio.write_json(outdir / REPORT_JSON, [asdict(r) for r in results])
