"""Correction: image files in, upright image files out.

Each image is predicted on a copy prepared like the training images (grey or colour,
resized to the model input, scaled to [0, 1]); the original is rotated at full
resolution by minus the predicted angle and written atomically. Inputs are only read.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps

from upright import fileio
from upright.geometry import rotate_image
from upright.models.model import AngleModel, ModelSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
REPORT_CSV = "angles.csv"


class CorrectionError(RuntimeError):
    """A problem with one input file; the message names the file."""


@dataclass
class InputFile:
    path: Path
    relative: Path  # where it goes under the output folder


@dataclass
class Result:
    file: str
    angle: float | None
    action: str  # "rotated" or "failed"
    error: str = ""


def find_inputs(paths: Sequence[str | Path]) -> list[InputFile]:
    """Files as given, and image files under folders (recursively, sorted)."""
    found: list[InputFile] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if file.suffix.lower() in IMAGE_SUFFIXES:
                    found.append(InputFile(file, file.relative_to(path)))
        elif path.is_file():
            found.append(InputFile(path, Path(path.name)))
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return found


def read_image(path: Path) -> tuple[np.ndarray, Image.Image]:
    """Decode an image (EXIF orientation applied) into a uint8/uint16 array (H, W[, C])."""
    try:
        with Image.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            fmt = opened.format
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CorrectionError(f"{path}: cannot read image ({exc})") from exc
    image.format = fmt
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB" if image.mode != "1" else "L")
    elif image.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(image, dtype=np.uint16), image
    elif image.mode in ("I", "F"):
        image = image.convert("F")
        arr = np.asarray(image, dtype=np.float32)
        return arr, image
    return np.asarray(image), image


def model_input(pixels: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Prepare a decoded image like the training images: (C, H, W) float32 in [0, 1]."""
    x = pixels.astype(np.float32)
    if pixels.dtype == np.uint16:
        x /= 65535.0
    elif pixels.dtype == np.uint8:
        x /= 255.0
    else:  # float images: stretch to [0, 1]
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    if x.ndim == 3 and x.shape[2] in (2, 4):  # drop alpha
        x = x[:, :, : x.shape[2] - 1]
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[:, :, 0]
    if spec.channels == 1 and x.ndim == 3:
        x = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)
    elif spec.channels == 3 and x.ndim == 2:
        x = np.repeat(x[:, :, None], 3, axis=2)
    h, w = x.shape[:2]
    interp = cv2.INTER_AREA if (w > spec.width or h > spec.height) else cv2.INTER_LINEAR
    x = cv2.resize(x, (spec.width, spec.height), interpolation=interp)
    if x.ndim == 2:
        x = x[:, :, None]
    return np.ascontiguousarray(x.transpose(2, 0, 1))


@torch.no_grad()
def predict_images(model: AngleModel, inputs: Iterable[np.ndarray]) -> np.ndarray:
    batch = torch.from_numpy(np.stack(list(inputs)))
    device = next(model.parameters()).device
    return model.predict_angles(batch.to(device)).cpu().numpy().astype(np.float64)


def save_like(pixels: np.ndarray, original: Image.Image, target: Path) -> None:
    """Write pixels in the original's format and mode, atomically."""
    mode = original.mode
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    out = Image.fromarray(pixels.astype(np.float32) if mode == "F" else pixels)
    fmt = original.format or Image.registered_extensions().get(target.suffix.lower(), "PNG")
    params = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "JPEG" and out.mode not in ("L", "RGB", "CMYK"):
        out = out.convert("RGB")
    buffer = io.BytesIO()
    out.save(buffer, format=fmt, **params)
    fileio.write_bytes(target, buffer.getvalue())


def correct_paths(paths: Sequence[str | Path], model: AngleModel, outdir: str | Path,
                  canvas: str = "same", fill: float = 0, batch_size: int = 32) -> list[Result]:
    """Correct every image under ``paths`` into ``outdir``; writes angles.csv there."""
    outdir = Path(outdir)
    files = find_inputs(paths)
    results: list[Result] = []
    for chunk in _chunks(files, batch_size):
        decoded = []
        for item in chunk:
            try:
                pixels, image = read_image(item.path)
                decoded.append((item, pixels, image, model_input(pixels, model.spec)))
            except CorrectionError as exc:
                results.append(Result(str(item.path), None, "failed", str(exc)))
        if not decoded:
            continue
        angles = predict_images(model, (d[3] for d in decoded))
        for (item, pixels, image, _), angle in zip(decoded, angles, strict=True):
            rotated = rotate_image(pixels, -angle, canvas=canvas, fill=fill)
            save_like(rotated, image, outdir / item.relative)
            results.append(Result(str(item.path), round(float(angle), 3), "rotated"))
    write_report(results, outdir)
    return results


def write_report(results: Sequence[Result], outdir: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "angle", "action", "error"])
    for r in results:
        writer.writerow([r.file, "" if r.angle is None else f"{r.angle:.3f}", r.action, r.error])
    fileio.write_text(outdir / REPORT_CSV, buffer.getvalue())


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
