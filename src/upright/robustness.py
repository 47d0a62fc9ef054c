"""The robustness suite: the test split turned by other means than our own protocol.

The protocol figure measures our pipeline; these measure the task. Each variant takes the
same seeded (test image, angle) items and makes the rotated image another way: with the
digit moved and resized first, by other libraries' resamplers, with no resampler pattern
at all, with noise or JPEG artefacts after the turn, or as a negative. Every model is
scored on exactly the same images (seeded by the evaluation seed, never by the model).

``SUITE`` holds the variants a model is judged on (their mean and worst are the
headline); ``HELD_OUT`` holds further realistic changes that no recipe is tuned to, scored
beside them so that a model tuned to the suite's list shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from upright.angles import circular_difference
from upright.data.rotated import RotatedSet, protocol_set
from upright.geometry import PROTOCOL_CENTRE, rotate_image, rotation_matrices
from upright.resamplers import OTHER_RESAMPLERS

# The pose variant: shift up to this many pixels on each axis, scale in this range.
POSE_SHIFT = 2.0
POSE_SCALE = (0.85, 1.15)
NOISE_SIGMA = 10.0  # grey levels
JPEG_QUALITY = 75


def _protocol(image: np.ndarray, angle: float, fill: float = 0) -> np.ndarray:
    """The article's own rotation (OpenCV bilinear about (w / 2, h / 2))."""
    return rotate_image(image, angle, fill=fill, centre=PROTOCOL_CENTRE).reshape(image.shape)


def _warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(image.shape)


def pose(image: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """Moved by up to +-2 px and scaled 0.85-1.15, then turned (one bilinear warp)."""
    h, w = image.shape[:2]
    shift = torch.from_numpy(rng.uniform(-POSE_SHIFT, POSE_SHIFT, (1, 2)))
    scale = torch.from_numpy(rng.uniform(*POSE_SCALE, 1))
    matrix = rotation_matrices(torch.tensor([float(angle)]), h, w, PROTOCOL_CENTRE, scale, shift)
    return _warp(image, matrix[0].numpy())


def off_centre(image: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """Turned about a point up to 2 px from the centre on each axis (the content moves by up
    to 5.7 px at 180 degrees), as a crop of a larger turned page is."""
    import cv2

    h, w = image.shape[:2]
    cx, cy = w / 2 + rng.uniform(-2, 2), h / 2 + rng.uniform(-2, 2)
    return _warp(image, cv2.getRotationMatrix2D((cx, cy), float(angle), 1.0))


def gaussian_noise(image: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """The protocol's rotation, then Gaussian noise of 10 grey levels."""
    noisy = _protocol(image, angle).astype(np.float64) + rng.normal(0, NOISE_SIGMA, image.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, angle: float, rng: np.random.Generator,
         quality: int = JPEG_QUALITY) -> np.ndarray:
    """The protocol's rotation, saved as a JPEG (quality 75) and read back."""
    import cv2

    turned = _protocol(image, angle)
    ok, data = cv2.imencode(".jpg", turned, [cv2.IMWRITE_JPEG_QUALITY, quality])
    flag = cv2.IMREAD_GRAYSCALE if turned.ndim == 2 or turned.shape[2] == 1 else cv2.IMREAD_COLOR
    return cv2.imdecode(data, flag).reshape(image.shape)


def inverted(image: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """A negative: dark content on a light background, turned with a light fill (a scan)."""
    return _protocol(255 - image, angle, fill=255)


def blur(image: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """Out of focus: the protocol's rotation, then a Gaussian blur of sigma 1 px."""
    import cv2

    return cv2.GaussianBlur(_protocol(image, angle), (0, 0), 1.0).reshape(image.shape)


def low_contrast(image: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """Faded ink on grey paper: the levels squeezed into [80, 170], grey fill."""
    turned = _protocol(image, angle).astype(np.float64)
    return np.round(80 + turned * (90 / 255)).astype(np.uint8)


def thick_strokes(image: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """A bolder pen: the upright image dilated by a 2x2 square before the turn."""
    import cv2

    return _protocol(cv2.dilate(image, np.ones((2, 2), np.uint8)).reshape(image.shape), angle)


def downscaled(image: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """A low-resolution capture: the turned image shrunk to 60% and blown back up."""
    import cv2

    turned = _protocol(image, angle)
    h, w = image.shape[:2]
    small = cv2.resize(turned, (round(w * 0.6), round(h * 0.6)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).reshape(image.shape)


def _other_resampler(name: str) -> Callable[[np.ndarray, float, np.random.Generator], np.ndarray]:
    rotate = OTHER_RESAMPLERS[name]
    return lambda image, angle, rng: rotate(image, angle)


@dataclass(frozen=True)
class Variant:
    make: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    description: str


SUITE: dict[str, Variant] = {
    "pose": Variant(pose, "shifted up to 2 px, scaled 0.85-1.15, then turned"),
    "pillow_bicubic": Variant(_other_resampler("pillow_bicubic"), "Pillow rotate(BICUBIC)"),
    "pillow_nearest": Variant(_other_resampler("pillow_nearest"), "Pillow rotate() (nearest)"),
    "opencv_lanczos": Variant(_other_resampler("opencv_lanczos"), "OpenCV Lanczos-4"),
    "physical": Variant(_other_resampler("physical"), "upsampled 8x, turned, area-downsampled"),
    "noise": Variant(gaussian_noise, "Gaussian noise, sigma 10 grey levels, after the turn"),
    "jpeg": Variant(jpeg, "saved as JPEG quality 75 after the turn"),
    "inverted": Variant(inverted, "dark content on a light background, light fill"),
}
HELD_OUT: dict[str, Variant] = {
    "off_centre": Variant(off_centre, "turned about a point up to 2 px from the centre"),
    "blur": Variant(blur, "Gaussian blur, sigma 1 px, after the turn"),
    "low_contrast": Variant(low_contrast, "levels squeezed into [80, 170]"),
    "thick_strokes": Variant(thick_strokes, "upright image dilated 2x2 before the turn"),
    "downscaled": Variant(downscaled, "shrunk to 60% and enlarged back after the turn"),
}
VARIANTS = {**SUITE, **HELD_OUT}


def variant_set(rotated: RotatedSet, name: str, seed: int) -> RotatedSet:
    """The items of ``rotated`` made by variant ``name`` (uint8, turned in advance); the
    variant's random draws depend only on ``seed`` and the variant's name."""
    if name not in VARIANTS:
        raise ValueError(f"unknown robustness variant {name!r}; choose from {', '.join(VARIANTS)}")
    make = VARIANTS[name].make
    rng = np.random.default_rng([seed, *name.encode()])
    out = np.empty((len(rotated),) + rotated.images.shape[1:], dtype=np.uint8)
    for i, (src, angle) in enumerate(zip(rotated.source, rotated.angles, strict=True)):
        out[i] = make(rotated.images[src], float(angle), rng)
    return RotatedSet(out, np.arange(len(rotated)), rotated.angles)


def suite_items(test_images: np.ndarray, source_ids: np.ndarray, angles_per_image: int,
                seed: int) -> RotatedSet:
    """The suite's (image, angle) items: each test image at the first ``angles_per_image``
    of its protocol angles (the same items as the protocol test set's)."""
    return protocol_set(test_images, source_ids, angles_per_image, seed)


def score(predict: Callable[[RotatedSet], Any], items: RotatedSet, seed: int,
          variants: dict[str, Variant] = VARIANTS, progress: bool = False) -> dict[str, Any]:
    """Circular MAE and within-5 of ``predict`` (a prerotated set -> angles, or an
    AngleBelief, whose calibration is then scored too) on every variant, with the suite's
    mean and worst (held-out variants reported beside them)."""
    from tqdm import tqdm

    from upright.confidence import AngleBelief, calibration_report
    from upright.evaluation import summarise

    per_variant: dict[str, dict[str, float]] = {}
    for name in tqdm(list(variants), desc="robustness suite", disable=not progress, leave=False):
        made = variant_set(items, name, seed)
        predicted = predict(made)
        angles = predicted.angle if isinstance(predicted, AngleBelief) else predicted
        summary = summarise(angles, made.angles)
        per_variant[name] = {k: summary[k] for k in ("circular_mae", "within_5", "median_error", "count")}
        if isinstance(predicted, AngleBelief) and not np.isnan(predicted.confidence).any():
            correct = np.abs(circular_difference(angles, made.angles)) <= 5.0
            report = calibration_report(predicted.confidence, correct)
            per_variant[name].update(ece=report["ece"], mean_confidence=report["mean_confidence"])
    in_suite = [n for n in per_variant if n in SUITE]
    held_out = [n for n in per_variant if n in HELD_OUT]
    result: dict[str, Any] = {"variants": per_variant}
    for key, names in (("suite", in_suite), ("held_out", held_out)):
        if names:
            worst = max(names, key=lambda n: per_variant[n]["circular_mae"])
            result[key] = {
                "mean_circular_mae": float(np.mean([per_variant[n]["circular_mae"] for n in names])),
                "min_within_5": float(min(per_variant[n]["within_5"] for n in names)),
                "worst": worst, "worst_circular_mae": per_variant[worst]["circular_mae"],
            }
    return result
