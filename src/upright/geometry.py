"""Rotation: one convention for the whole project.

Counter-clockwise positive in the displayed image (y axis pointing down), bilinear,
constant fill: OpenCV's ``getRotationMatrix2D`` + ``warpAffine`` convention, with pixel
i's centre at coordinate i. The centre of rotation is named:

- ``"article"``, (w / 2, h / 2): the published protocols (training rotations, the
  20-angle test sets, the fixed-angle set) rotate about it exactly as the article's
  ``cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)`` does: pixel (14, 14) of a 28x28
  digit, which is also where MNIST puts the digits' centre of mass, so a rotation does
  not move a digit;
- ``"image"``, ((w - 1) / 2, (h - 1) / 2): the true centre of the pixel grid, about which
  a user's file is turned upright (``rotate_image``).

``rotate_batch`` rotates tensors on the training device, ``rotate_image`` full-resolution
numpy images. Training-only augmentation lives in ``upright.augment``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

CANVAS_MODES = ("same", "expand", "crop")
# rotate_image's interpolations: OpenCV's flags by name (cv2.INTER_LINEAR, INTER_LANCZOS4).
IMAGE_INTERPOLATIONS = {"linear": 1, "lanczos4": 4}
# Centres of rotation in OpenCV pixel coordinates, by name (see the module docstring).
CENTRES = {
    "article": lambda width, height: (width / 2.0, height / 2.0),
    "image": lambda width, height: ((width - 1) / 2.0, (height - 1) / 2.0),
}
PROTOCOL_CENTRE = "article"
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


def centre_of(name: str, width: int, height: int) -> tuple[float, float]:
    """The named centre of rotation (x, y) of a width x height image, in pixel coordinates."""
    if name not in CENTRES:
        raise ValueError(f"unknown centre {name!r}; choose from {', '.join(CENTRES)}")
    return CENTRES[name](width, height)


def rotation_matrices(angles_deg: torch.Tensor, height: int, width: int, centre: str = PROTOCOL_CENTRE,
                      scale: torch.Tensor | None = None, shift: torch.Tensor | None = None
                      ) -> torch.Tensor:
    """Forward maps (N, 2, 3) in pixel coordinates, float64: content scaled by ``scale``
    about the centre, moved by ``shift`` (N, 2) pixels (x, y), then rotated counter-clockwise
    by ``angles_deg`` about the centre. Without scale and shift each matrix is
    ``cv2.getRotationMatrix2D(centre, angle, 1.0)``."""
    rad = torch.deg2rad(angles_deg.detach().to(torch.float64).cpu())
    cos, sin = torch.cos(rad), torch.sin(rad)
    s = torch.ones_like(cos) if scale is None else scale.detach().to(torch.float64).cpu()
    t = torch.zeros(len(cos), 2, dtype=torch.float64) if shift is None else \
        shift.detach().to(torch.float64).cpu()
    cx, cy = centre_of(centre, width, height)
    # p' = c + R (s (p - c) + t), with R = [[cos, sin], [-sin, cos]] (y axis down).
    a, b = s * cos, s * sin
    tx = cx + cos * t[:, 0] + sin * t[:, 1] - (a * cx + b * cy)
    ty = cy - sin * t[:, 0] + cos * t[:, 1] - (-b * cx + a * cy)
    return torch.stack([torch.stack([a, b, tx], 1), torch.stack([-b, a, ty], 1)], 1)


def _grid_theta(forward: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """affine_grid's theta (output to input, normalised, align_corners=False) for forward
    pixel maps: pixel i of n sits at normalised (2i + 1) / n - 1."""
    linear, offset = forward[:, :, :2], forward[:, :, 2:]
    # The 2x2 inverse in closed form: torch.linalg.inv's per-call cost was a tenth of a
    # training step's rotation time.
    a, b, c, d = linear[:, 0, 0], linear[:, 0, 1], linear[:, 1, 0], linear[:, 1, 1]
    determinant = (a * d - b * c)[:, None, None]
    inverse = torch.stack([torch.stack([d, -b], 1), torch.stack([-c, a], 1)], 1) / determinant
    inverse_offset = -inverse @ offset
    scale = torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64)
    origin = torch.tensor([(width - 1) / 2.0, (height - 1) / 2.0], dtype=torch.float64)[:, None]
    # input = D^-1 (M (D u + o) + b - o) for output u, with D = diag(scale), o = origin.
    theta_linear = inverse * scale[None, None, :] / scale[None, :, None]
    theta_offset = (inverse @ origin + inverse_offset - origin) / scale[None, :, None]
    return torch.cat([theta_linear, theta_offset], dim=2)


def rotation_theta(angles_deg: torch.Tensor, height: int, width: int, centre: str = PROTOCOL_CENTRE,
                   scale: torch.Tensor | None = None, shift: torch.Tensor | None = None) -> torch.Tensor:
    """The normalised output-to-input maps (N, 2, 3), float32 on the angles' device, that
    ``rotation_grid`` samples along (see ``rotation_matrices`` for the arguments)."""
    return _grid_theta(rotation_matrices(angles_deg, height, width, centre, scale, shift),
                       height, width).to(torch.float32).to(angles_deg.device)


def grid_of_theta(theta: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """grid_sample grid (N, rows, cols, 2) of normalised maps ``theta`` (N, 2, 3)."""
    # What F.affine_grid(theta, size, align_corners=False) gives, as one broadcast sum of a
    # row term and a column term, both coordinates at once: affine_grid's batched matrix
    # product with an inner size of 3 took most of a training step's rotation time on CPU,
    # and a multiply-add per coordinate then a stack four full-size passes more.
    x = (2 * torch.arange(cols, dtype=theta.dtype, device=theta.device) + 1) / cols - 1
    y = (2 * torch.arange(rows, dtype=theta.dtype, device=theta.device) + 1) / rows - 1
    t = theta.transpose(1, 2)[:, :, None, None, :]  # (N, 3, 1, 1, 2): x, y and 1 -> input (x, y)
    along_x = t[:, 0] * x[None, None, :, None] + t[:, 2]  # (N, 1, W, 2)
    return along_x + t[:, 1] * y[None, :, None, None]  # + (N, H, 1, 2) -> (N, H, W, 2)


def rotation_grid(angles_deg: torch.Tensor, height: int, width: int, centre: str = PROTOCOL_CENTRE,
                  scale: torch.Tensor | None = None, shift: torch.Tensor | None = None,
                  out_height: int | None = None, out_width: int | None = None) -> torch.Tensor:
    """grid_sample grid (N, H', W', 2) that rotates (N, C, H, W) images counter-clockwise by
    ``angles_deg`` about the named centre (after ``scale`` and ``shift``, see
    ``rotation_matrices``); H', W' default to H, W (larger: sub-pixel samples)."""
    theta = rotation_theta(angles_deg, height, width, centre, scale, shift)
    return grid_of_theta(theta, out_height or height, out_width or width)


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
    stride = w + 2 * pad
    xi = (x0.long() - 1 + pad).clamp(0, w + pad)
    yi = (y0.long() - 1 + pad).clamp(0, h + pad)
    # Flat index of each of the 16 taps of each output pixel, (N, 16, H, W): the first tap
    # plus the tap's fixed offset in the padded image (row-major over the 4x4 window).
    window = torch.arange(4, device=images.device)
    offsets = (window[:, None] * stride + window[None, :]).reshape(1, 16, 1, 1)
    flat = (yi * stride + xi).unsqueeze(1) + offsets
    taps = padded.reshape(n, c, -1).gather(2, flat.reshape(n, 1, -1).expand(n, c, -1))
    taps = taps.reshape(n, c, 4, 4, h, w)
    # Separable weights: along x within each tap row, then along y.
    rows = (taps * wx.permute(1, 0, 2, 3).reshape(n, 1, 1, 4, h, w)).sum(dim=3)
    return (rows * wy.permute(1, 0, 2, 3).reshape(n, 1, 4, h, w)).sum(dim=2)


def rotate_batch(images: torch.Tensor, angles_deg: torch.Tensor, fill: float = 0.0,
                 mode: str = "bilinear", cubic_a: float | torch.Tensor = -0.75,
                 centre: str = PROTOCOL_CENTRE, scale: torch.Tensor | None = None,
                 shift: torch.Tensor | None = None, theta: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate float images (N, C, H, W) in [0, 1] counter-clockwise by per-image angles in
    degrees about the named centre; ``mode`` is one of RESAMPLERS (``cubic_a``: Keys'
    parameter for "cubic"); ``scale`` and ``shift`` (pixels) move the content first.
    ``theta``: the maps ``rotation_theta`` gives for these arguments, found beforehand
    (a batch split between resamplers finds them once)."""
    if mode not in RESAMPLERS:
        raise ValueError(f"unknown resampler {mode!r}; choose from {', '.join(RESAMPLERS)}")
    if images.ndim != 4:
        raise ValueError(f"rotate_batch expects (N, C, H, W) images, got shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    if len(angles_deg) != n:
        raise ValueError(f"{n} images but {len(angles_deg)} angles")
    if theta is None:
        theta = rotation_theta(angles_deg.to(images.device), h, w, centre, scale, shift)
    theta = theta.to(images.device, images.dtype)
    grid = grid_of_theta(theta, h, w) if mode != "area" or fill != 0.0 else None
    if mode == "cubic":
        rotated = cubic_sample(images, grid, cubic_a)
    elif mode == "area":
        k = AREA_SUBSAMPLES  # a k-times finer grid has its points at the sub-pixel centres
        rotated = F.avg_pool2d(F.grid_sample(images, grid_of_theta(theta, h * k, w * k), mode="bilinear",
                                             padding_mode="zeros", align_corners=False), k)
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


def rotation_matrix(angle_deg: float, width: int, height: int, canvas: str = "same",
                    centre: str = "image"):
    """2x3 OpenCV matrix and output size (w, h) for rotating a (height, width) image about
    the named centre (a user's file: its true centre)."""
    if canvas not in CANVAS_MODES:
        raise ValueError(f"unknown canvas mode {canvas!r}; choose from {', '.join(CANVAS_MODES)}")
    import cv2  # here, not at the top: 15 MB that training processes never need

    centre = centre_of(centre, width, height)
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
    centre: str = "image",
) -> np.ndarray:
    """Rotate a full-resolution (H, W) or (H, W, C) image counter-clockwise by ``angle_deg``
    about the named centre (``interpolation``: one of IMAGE_INTERPOLATIONS)."""
    if interpolation not in IMAGE_INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; choose from "
                         f"{', '.join(IMAGE_INTERPOLATIONS)}")
    height, width = image.shape[:2]
    matrix, size = rotation_matrix(angle_deg, width, height, canvas, centre)
    channels = 1 if image.ndim == 2 else image.shape[2]
    fill_value = (fill,) * channels if np.isscalar(fill) else tuple(fill)
    if len(fill_value) < 4:
        fill_value = tuple(fill_value) + (0,) * (4 - len(fill_value))
    flags = IMAGE_INTERPOLATIONS[interpolation]
    if max(width, height, *size) < WARP_MAX_SIDE:
        return _warp(image, matrix, size, flags, fill_value)
    return _warp_tiled(image, matrix, size, flags, fill_value)


# OpenCV's warpAffine (remap) refuses images with a side of 32767 pixels or more; beyond
# that an image is turned tile by tile, each tile from the part of the image it shows.
WARP_MAX_SIDE = 32767
WARP_TILE = 4096


def _warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], flags: int,
          fill_value: tuple[float, ...]) -> np.ndarray:
    import cv2  # here, not at the top: 15 MB that training processes never need

    rotated = cv2.warpAffine(image, matrix, size, flags=flags, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=fill_value)
    if image.ndim == 3 and rotated.ndim == 2:  # OpenCV drops a single channel axis
        rotated = rotated[:, :, None]
    return rotated


def _warp_region(image: np.ndarray, matrix: np.ndarray, box: tuple[int, int, int, int], flags: int,
                 fill_value: tuple[float, ...]) -> np.ndarray:
    """The part (left, top, width, height) of the turned image, warped from the part of
    ``image`` it shows only (identical to that part of the whole warp)."""
    import cv2

    left, top, tile_w, tile_h = box
    height, width = image.shape[:2]
    inverse = cv2.invertAffineTransform(matrix)
    margin = 5  # interpolation taps beyond the tile's exact preimage (Lanczos: 4)
    corners = np.array([[left, top], [left + tile_w, top], [left, top + tile_h],
                        [left + tile_w, top + tile_h]], np.float64)
    src = corners @ inverse[:, :2].T + inverse[:, 2]
    x0 = max(int(np.floor(src[:, 0].min())) - margin, 0)
    x1 = min(int(np.ceil(src[:, 0].max())) + margin, width)
    y0 = max(int(np.floor(src[:, 1].min())) - margin, 0)
    y1 = min(int(np.ceil(src[:, 1].max())) + margin, height)
    if x0 >= x1 or y0 >= y1:  # the tile shows only fill
        colour = np.asarray(fill_value[: 1 if image.ndim == 2 else image.shape[2]], image.dtype)
        return np.broadcast_to(colour.reshape((1, 1) + image.shape[2:]),
                               (tile_h, tile_w) + image.shape[2:]).copy()
    # The same turn, from the crop's coordinates to the tile's.
    tile_matrix = matrix.copy()
    tile_matrix[:, 2] += tile_matrix[:, :2] @ np.array([x0, y0], np.float64)
    tile_matrix[:, 2] -= np.array([left, top], np.float64)
    return _warp(np.ascontiguousarray(image[y0:y1, x0:x1]), tile_matrix, (tile_w, tile_h), flags,
                 fill_value)


def _warp_tiled(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], flags: int,
                fill_value: tuple[float, ...]) -> np.ndarray:
    out = np.empty((size[1], size[0]) + image.shape[2:], image.dtype)
    for top in range(0, size[1], WARP_TILE):
        for left in range(0, size[0], WARP_TILE):
            tile_h, tile_w = min(WARP_TILE, size[1] - top), min(WARP_TILE, size[0] - left)
            out[top:top + tile_h, left:left + tile_w] = _warp_region(
                image, matrix, (left, top, tile_w, tile_h), flags, fill_value)
    return out


def rotate_image_strips(
    image: np.ndarray,
    angle_deg: float,
    canvas: str = "same",
    fill: float | tuple[float, ...] = 0,
    rows: int = 256,
) -> tuple[tuple[int, int], Iterator[np.ndarray]]:
    """``rotate_image`` (bilinear, about the image's centre) as an output size (w, h) and the
    turned image's rows, ``rows`` at a time, top to bottom: a writer that streams them never
    holds a second full-size image."""
    height, width = image.shape[:2]
    matrix, size = rotation_matrix(angle_deg, width, height, canvas, "image")
    channels = 1 if image.ndim == 2 else image.shape[2]
    fill_value = (fill,) * channels if np.isscalar(fill) else tuple(fill)
    fill_value = tuple(fill_value) + (0,) * max(0, 4 - len(fill_value))
    flags = IMAGE_INTERPOLATIONS["linear"]

    def strips() -> Iterator[np.ndarray]:
        for top in range(0, size[1], rows):
            strip_h = min(rows, size[1] - top)
            parts = [_warp_region(image, matrix, (left, top, min(WARP_TILE, size[0] - left), strip_h),
                                  flags, fill_value)
                     for left in range(0, size[0], WARP_TILE)]
            yield parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    return size, strips()
