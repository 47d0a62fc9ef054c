"""Rotation: one convention for the whole project.

Counter-clockwise positive in the displayed image (y axis pointing down), about the
image centre ((W-1)/2, (H-1)/2), bilinear, constant fill -- OpenCV's
``getRotationMatrix2D`` convention. ``rotate_batch`` does it for tensors on the
training device, ``rotate_image`` for full-resolution numpy images.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

CANVAS_MODES = ("same", "expand", "crop")
# grid_sample's interpolations; training can mix them so a model cannot key on one
# resampler's blur pattern (bilinear blurs most at 45 degrees and not at all at 0 or 90).
RESAMPLERS = ("bilinear", "bicubic", "nearest")


def rotation_grid(angles_deg: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Sampling grid that rotates (N, C, H, W) images counter-clockwise by ``angles_deg``."""
    rad = torch.deg2rad(angles_deg.to(torch.float32))
    cos, sin = torch.cos(rad), torch.sin(rad)
    # Output pixel (x', y') (relative to the centre) samples the input at
    # x = cos x' - sin y', y = sin x' + cos y'; normalised coords scale x by W/2, y by H/2.
    aspect = height / width
    zeros = torch.zeros_like(cos)
    theta = torch.stack(
        [
            torch.stack([cos, -sin * aspect, zeros], dim=1),
            torch.stack([sin / aspect, cos, zeros], dim=1),
        ],
        dim=1,
    )
    return F.affine_grid(theta, [len(angles_deg), 1, height, width], align_corners=False)


def rotate_batch(images: torch.Tensor, angles_deg: torch.Tensor, fill: float = 0.0,
                 mode: str = "bilinear") -> torch.Tensor:
    """Rotate float images (N, C, H, W) in [0, 1] counter-clockwise by per-image angles in
    degrees; ``mode`` is one of RESAMPLERS."""
    if mode not in RESAMPLERS:
        raise ValueError(f"unknown resampler {mode!r}; choose from {', '.join(RESAMPLERS)}")
    if images.ndim != 4:
        raise ValueError(f"rotate_batch expects (N, C, H, W) images, got shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    if len(angles_deg) != n:
        raise ValueError(f"{n} images but {len(angles_deg)} angles")
    grid = rotation_grid(angles_deg.to(images.device), h, w).to(images.dtype)
    rotated = F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)
    if mode == "bicubic":
        rotated = rotated.clamp(0.0, 1.0)  # cubic weights overshoot at edges
    if fill != 0.0:
        # Pixels that sampled outside the image get the fill value, in proportion.
        ones = torch.ones((n, 1, h, w), dtype=images.dtype, device=images.device)
        coverage = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros",
                                 align_corners=False)
        rotated = rotated + (1.0 - coverage) * fill
    return rotated


def rotate_mixed(images: torch.Tensor, angles_deg: torch.Tensor, fill: float = 0.0,
                 modes: tuple[str, ...] | list[str] = ("bilinear",)) -> torch.Tensor:
    """``rotate_batch`` with the batch split into equal consecutive parts, one per resampler."""
    if len(modes) == 1:  # no split, no copies
        return rotate_batch(images, angles_deg, fill, modes[0])
    parts = torch.tensor_split(torch.arange(len(images)), len(modes))
    return torch.cat([rotate_batch(images[idx], angles_deg[idx], fill, mode)
                      for idx, mode in zip(parts, modes, strict=True) if len(idx)])


def jitter_sharpness(images: torch.Tensor, strength: float) -> torch.Tensor:
    """Blur or sharpen each image by a random amount: x + s (x - blur(x)), s uniform in
    [-strength, strength] per image (s = -1: a 3x3 binomial blur; s > 0: unsharp mask).
    Resamplers differ mostly in how sharp they leave edges; this makes that a nuisance
    the model has to ignore rather than a cue it can read."""
    if strength <= 0:
        return images
    n, c = images.shape[:2]
    k1 = torch.tensor([0.25, 0.5, 0.25], dtype=images.dtype, device=images.device)
    kernel = (k1[:, None] * k1[None, :]).expand(c, 1, 3, 3)
    blurred = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)
    s = (torch.rand(n, 1, 1, 1, dtype=images.dtype, device=images.device) * 2 - 1) * strength
    return (images + s * (images - blurred)).clamp(0.0, 1.0)


def rotation_matrix(angle_deg: float, width: int, height: int, canvas: str = "same"):
    """2x3 OpenCV matrix and output size (w, h) for rotating a (height, width) image."""
    if canvas not in CANVAS_MODES:
        raise ValueError(f"unknown canvas mode {canvas!r}; choose from {', '.join(CANVAS_MODES)}")
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    matrix = cv2.getRotationMatrix2D(centre, float(angle_deg), 1.0)
    if canvas == "same":
        return matrix, (width, height)
    rad = math.radians(angle_deg)
    cos, sin = abs(math.cos(rad)), abs(math.sin(rad))
    if canvas == "expand":
        out_w = int(math.ceil(width * cos + height * sin - 1e-6))
        out_h = int(math.ceil(width * sin + height * cos - 1e-6))
    else:
        crop_w, crop_h = largest_upright_rectangle(width, height, angle_deg)
        out_w, out_h = max(1, int(crop_w)), max(1, int(crop_h))
    # Move the rotated centre to the centre of the new canvas.
    matrix[0, 2] += (out_w - 1) / 2.0 - centre[0]
    matrix[1, 2] += (out_h - 1) / 2.0 - centre[1]
    return matrix, (out_w, out_h)


def largest_upright_rectangle(width: int, height: int, angle_deg: float) -> tuple[float, float]:
    """Largest axis-aligned rectangle (w, h) inside a width x height rectangle rotated by
    ``angle_deg``, centred on it, shrunk by a pixel margin so bilinear edges hold no fill."""
    rad = math.radians(angle_deg)
    sin, cos = abs(math.sin(rad)), abs(math.cos(rad))
    if sin < 1e-9 or cos < 1e-9:  # exact quarter turns lose nothing
        return (float(width), float(height)) if sin < 1e-9 else (float(height), float(width))
    long_side, short_side = max(width, height), min(width, height)
    if short_side <= 2.0 * sin * cos * long_side or abs(sin - cos) < 1e-10:
        # Thin case: the rectangle touches both long sides of the rotated image.
        half = 0.5 * short_side
        w, h = (half / sin, half / cos) if width >= height else (half / cos, half / sin)
    else:
        cos2 = cos * cos - sin * sin
        w = (width * cos - height * sin) / cos2
        h = (height * cos - width * sin) / cos2
    margin = 2.0  # bilinear interpolation blends one pixel of fill at the border
    return max(1.0, math.floor(w) - margin), max(1.0, math.floor(h) - margin)


def rotate_image(
    image: np.ndarray,
    angle_deg: float,
    canvas: str = "same",
    fill: float | tuple[float, ...] = 0,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Rotate a full-resolution (H, W) or (H, W, C) image counter-clockwise by ``angle_deg``."""
    height, width = image.shape[:2]
    matrix, size = rotation_matrix(angle_deg, width, height, canvas)
    channels = 1 if image.ndim == 2 else image.shape[2]
    fill_value = (fill,) * channels if np.isscalar(fill) else tuple(fill)
    if len(fill_value) < 4:
        fill_value = tuple(fill_value) + (0,) * (4 - len(fill_value))
    rotated = cv2.warpAffine(image, matrix, size, flags=interpolation,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=fill_value)
    if image.ndim == 3 and rotated.ndim == 2:  # OpenCV drops a single channel axis
        rotated = rotated[:, :, None]
    return rotated
