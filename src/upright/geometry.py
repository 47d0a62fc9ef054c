"""Rotation: one convention for the whole project.

Counter-clockwise positive in the displayed image (y axis pointing down), about the
image centre ((W-1)/2, (H-1)/2), bilinear, constant fill -- OpenCV's
``getRotationMatrix2D`` convention. ``rotate_batch`` does it for tensors on the
training device, ``rotate_image`` for full-resolution numpy images.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

CANVAS_MODES = ("same", "expand", "crop")
# rotate_image's interpolations: OpenCV's flags by name (cv2.INTER_LINEAR, INTER_LANCZOS4).
IMAGE_INTERPOLATIONS = {"linear": 1, "lanczos4": 4}
# grid_sample's interpolations plus Keys cubic convolution with a chosen sharpness;
# training can mix them so a model cannot key on one resampler's blur pattern (bilinear
# blurs most at 45 degrees and not at all at 0 or 90).
RESAMPLERS = ("bilinear", "bicubic", "nearest", "cubic", "area")
# "area": each output pixel averages AREA_SUBSAMPLES x AREA_SUBSAMPLES bilinear samples over
# its own square, so the blur hardly depends on the angle and leaves almost no fingerprint.
AREA_SUBSAMPLES = 4
# Keys' cubic kernel parameter a, drawn per image when training mixes in "cubic": -0.5 is
# Catmull-Rom, -0.75 torch's and OpenCV's bicubic, -1 Pillow's rotate (sharpest, most
# overshoot). Covering the family is resampling noise, not one resampler learnt.
CUBIC_A_RANGE = (-1.0, -0.5)


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


def _keys_weights(t: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Keys cubic-convolution weights (4, ...) of the taps at offsets -1, 0, 1, 2 for
    fractions t in [0, 1): the kernel's two cubic pieces evaluated at 1+t, t, 1-t, 2-t."""
    t2 = t * t
    t3 = t2 * t
    return torch.stack([
        a * (t3 - 2 * t2 + t),
        (a + 2) * t3 - (a + 3) * t2 + 1,
        -(a + 2) * t3 + (2 * a + 3) * t2 - a * t,
        a * (t2 - t3),
    ])


def cubic_sample(images: torch.Tensor, grid: torch.Tensor,
                 a: float | torch.Tensor = -0.75) -> torch.Tensor:
    """grid_sample (zeros padding, align_corners=False) with Keys' cubic kernel of
    parameter ``a`` (a float, or one per image); grid_sample's own bicubic fixes a = -0.75."""
    n, c, h, w = images.shape
    a = torch.as_tensor(a, dtype=images.dtype, device=images.device).reshape(-1, 1, 1)
    x = ((grid[..., 0] + 1) * w - 1) / 2  # pixel coordinates of each output's source
    y = ((grid[..., 1] + 1) * h - 1) / 2
    x0, y0 = torch.floor(x), torch.floor(y)
    wx, wy = _keys_weights(x - x0, a), _keys_weights(y - y0, a)
    # Four pixels of zeros: a source point further out is clamped to a window that holds
    # nothing but zeros, which is what its taps would read anyway.
    pad = 4
    padded = F.pad(images, (pad, pad, pad, pad))
    xi = (x0.long() - 1 + pad).clamp(0, w + pad)
    yi = (y0.long() - 1 + pad).clamp(0, h + pad)
    offsets = torch.arange(4, device=images.device)
    # Flat index of each of the 16 taps of each output pixel: (N, 4, 4, H, W).
    rows = (yi.unsqueeze(1) + offsets.view(1, 4, 1, 1)).unsqueeze(2)
    cols = (xi.unsqueeze(1) + offsets.view(1, 4, 1, 1)).unsqueeze(1)
    flat = (rows * (w + 2 * pad) + cols).reshape(n, 1, -1).expand(n, c, -1)
    taps = padded.reshape(n, c, -1).gather(2, flat).reshape(n, c, 4, 4, h, w)
    weights = wy.permute(1, 0, 2, 3).unsqueeze(2) * wx.permute(1, 0, 2, 3).unsqueeze(1)
    return (taps * weights.unsqueeze(1)).sum(dim=(2, 3))


def rotate_batch(images: torch.Tensor, angles_deg: torch.Tensor, fill: float = 0.0,
                 mode: str = "bilinear", cubic_a: float | torch.Tensor = -0.75) -> torch.Tensor:
    """Rotate float images (N, C, H, W) in [0, 1] counter-clockwise by per-image angles in
    degrees; ``mode`` is one of RESAMPLERS (``cubic_a``: Keys' parameter for "cubic")."""
    if mode not in RESAMPLERS:
        raise ValueError(f"unknown resampler {mode!r}; choose from {', '.join(RESAMPLERS)}")
    if images.ndim != 4:
        raise ValueError(f"rotate_batch expects (N, C, H, W) images, got shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    if len(angles_deg) != n:
        raise ValueError(f"{n} images but {len(angles_deg)} angles")
    grid = rotation_grid(angles_deg.to(images.device), h, w).to(images.dtype)
    if mode == "cubic":
        rotated = cubic_sample(images, grid, cubic_a)
    elif mode == "area":
        k = AREA_SUBSAMPLES  # a k-times finer grid has its points at the sub-pixel centres
        fine = rotation_grid(angles_deg.to(images.device), h * k, w * k).to(images.dtype)
        rotated = F.avg_pool2d(F.grid_sample(images, fine, mode="bilinear", padding_mode="zeros",
                                             align_corners=False), k)
    else:
        rotated = F.grid_sample(images, grid, mode=mode, padding_mode="zeros",
                                align_corners=False)
    if mode in ("bicubic", "cubic"):
        rotated = rotated.clamp(0.0, 1.0)  # cubic weights overshoot at edges
    if fill != 0.0:
        # Pixels that sampled outside the image get the fill value, in proportion.
        ones = torch.ones((n, 1, h, w), dtype=images.dtype, device=images.device)
        coverage = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros",
                                 align_corners=False)
        rotated = rotated + (1.0 - coverage) * fill
    return rotated


def rotate_mixed(images: torch.Tensor, angles_deg: torch.Tensor, fill: float = 0.0,
                 modes: tuple[str, ...] | list[str] = ("bilinear",),
                 cubic_a_range: tuple[float, float] | list[float] = CUBIC_A_RANGE) -> torch.Tensor:
    """``rotate_batch`` with the batch split into equal consecutive parts, one per resampler;
    "cubic" draws Keys' parameter per image uniformly from ``cubic_a_range``."""
    def rotate_part(part: torch.Tensor, angles: torch.Tensor, mode: str) -> torch.Tensor:
        if mode != "cubic":
            return rotate_batch(part, angles, fill, mode)
        low, high = cubic_a_range
        a = low + (high - low) * torch.rand(len(part), device=part.device, dtype=part.dtype)
        return rotate_batch(part, angles, fill, mode, cubic_a=a)

    if len(modes) == 1:  # no split, no copies
        return rotate_part(images, angles_deg, modes[0])
    parts = torch.tensor_split(torch.arange(len(images)), len(modes))
    return torch.cat([rotate_part(images[idx], angles_deg[idx], mode)
                      for idx, mode in zip(parts, modes, strict=True) if len(idx)])


def rotate_two_steps(images: torch.Tensor, angles_deg: torch.Tensor, fill: float = 0.0,
                     modes: tuple[str, ...] | list[str] = ("bilinear",),
                     cubic_a_range: tuple[float, float] | list[float] = CUBIC_A_RANGE
                     ) -> torch.Tensor:
    """Rotate by a random angle, then by the rest of ``angles_deg``, each step with
    ``rotate_mixed`` (the second step's resamplers shifted by one part). Every resampler
    leaves a fingerprint that tells its own angle modulo 90; here the last step's angle is
    random, so no fingerprint carries the label and only the shape does."""
    first = torch.rand(len(angles_deg), device=angles_deg.device) * 360.0 - 180.0
    turned = rotate_mixed(images, first, fill, modes, cubic_a_range)
    shifted = list(modes[1:]) + list(modes[:1])
    return rotate_mixed(turned, angles_deg - first.to(angles_deg.dtype), fill, shifted,
                        cubic_a_range)


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


def quantise_8bit(images: torch.Tensor) -> torch.Tensor:
    """Round each image to 8-bit grey levels, half of them by truncation, as image files
    hold them: libraries round (OpenCV) or truncate (Pillow's bicubic rotate), and a model
    that reads fine resampling detail notices one grey level."""
    truncate = torch.rand(len(images), 1, 1, 1, device=images.device) < 0.5
    offset = torch.where(truncate, 0.0, 0.5).to(images.dtype)
    return torch.floor(images.clamp(0.0, 1.0) * 255 + offset) / 255


def rotation_matrix(angle_deg: float, width: int, height: int, canvas: str = "same"):
    """2x3 OpenCV matrix and output size (w, h) for rotating a (height, width) image."""
    if canvas not in CANVAS_MODES:
        raise ValueError(f"unknown canvas mode {canvas!r}; choose from {', '.join(CANVAS_MODES)}")
    import cv2  # here, not at the top: 15 MB that training processes never need

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
    interpolation: str = "linear",
) -> np.ndarray:
    """Rotate a full-resolution (H, W) or (H, W, C) image counter-clockwise by ``angle_deg``
    (``interpolation``: one of IMAGE_INTERPOLATIONS)."""
    import cv2  # here, not at the top: 15 MB that training processes never need

    if interpolation not in IMAGE_INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; choose from "
                         f"{', '.join(IMAGE_INTERPOLATIONS)}")
    height, width = image.shape[:2]
    matrix, size = rotation_matrix(angle_deg, width, height, canvas)
    channels = 1 if image.ndim == 2 else image.shape[2]
    fill_value = (fill,) * channels if np.isscalar(fill) else tuple(fill)
    if len(fill_value) < 4:
        fill_value = tuple(fill_value) + (0,) * (4 - len(fill_value))
    rotated = cv2.warpAffine(image, matrix, size, flags=IMAGE_INTERPOLATIONS[interpolation],
                             borderMode=cv2.BORDER_CONSTANT, borderValue=fill_value)
    if image.ndim == 3 and rotated.ndim == 2:  # OpenCV drops a single channel axis
        rotated = rotated[:, :, None]
    return rotated
