"""What the model sees: an image file's pixels prepared to the model's input, and grey
levels made comparable before the network.

``prepare_image`` is the one way from decoded pixels (any size, mode and bit depth) to the
model's input size and channels: folder sources, correction, the API and the benches all
call it, so a model trained on a folder sees its files exactly as it saw them in training.

A digit can be light on black (MNIST) or dark on white paper (a scan); a photo can be dim
or washed out. ``LEVELS`` names the per-image rules a model can apply to its float input
(N, C, H, W) in [0, 1]. The model runs its rule inside ``AngleModel.forward``, so training,
evaluation, correction, the API and an exported ONNX graph all apply the very same
function (``ModelSpec.levels`` records which).

``polarity`` is exact under inversion: it inverts an image when its median lies above the
middle of its range (content darker than its background), and that test flips sign when
the image is inverted, so an image and its negative come out identical. ``autocontrast``
then stretches the 2nd..98th percentile to [0, 1]: background to black, ink to white.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

# Modes whose channels are not R, G, B: converted to RGB (by Pillow) before the model sees them.
CONVERTED_MODES = ("CMYK", "LAB", "YCbCr")
ASPECT_POLICIES = ("crop", "pad")  # centre-crop to a square, or pad to one with black


def prepare_image(pixels: np.ndarray, height: int, width: int, channels: int, aspect: str = "crop",
                  mode: str | None = None, frame: bool = False) -> np.ndarray:
    """Decoded pixels -> uint8 (height, width) or (height, width, 3), as the model sees them.

    ``frame`` (a model that frames its input): content small in a larger image is first
    cropped about, at the image's own resolution (``content_crop``).
    Alpha is dropped; a non-square image is centre-cropped (``aspect="crop"``) or shrunk
    and padded with black (``"pad"``: padding a 40000x40 strip first would allocate
    40000x40000 pixels); then area-averaged down (or bilinear up) to the model size; CMYK,
    LAB and YCbCr (``mode``) turned into RGB; 16 bits rounded to 8; colour made grey with
    the ITU-R 601 weights where the model takes one channel."""
    import cv2  # here, not at the top: training processes never need OpenCV
    from PIL import Image

    if aspect not in ASPECT_POLICIES:
        raise ValueError(f"aspect must be one of {ASPECT_POLICIES}, got {aspect!r}")
    x = pixels
    converted = mode in CONVERTED_MODES and x.ndim == 3
    if not converted and x.ndim == 3 and x.shape[2] in (2, 4):  # drop alpha
        x = x[:, :, : x.shape[2] - 1]
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[:, :, 0]
    if frame and not converted:
        x = content_crop(x, min(height, width))
    h, w = x.shape[:2]
    if h != w and aspect == "crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        x = x[top:top + side, left:left + side]
    elif h != w:
        scale = min(width / w, height / h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        x = _resize(cv2, x, size)
        top, left = (height - size[1]) // 2, (width - size[0]) // 2
        pad = [(top, height - size[1] - top), (left, width - size[0] - left)]
        x = np.pad(x, pad + [(0, 0)] * (x.ndim - 2))
    if x.shape[:2] != (height, width):
        x = _resize(cv2, x, (width, height))
    if x.dtype == np.uint16:
        x = ((x.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif x.dtype != np.uint8:
        raise ValueError(f"expected 8- or 16-bit pixels, got {x.dtype}")
    if converted:
        x = np.asarray(Image.frombytes(mode, (width, height), np.ascontiguousarray(x).tobytes())
                       .convert("RGB"))
    if channels == 1 and x.ndim == 3:
        x = cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2GRAY)
    elif channels == 3 and x.ndim == 2:
        x = np.repeat(x[:, :, None], 3, axis=2)
    return np.ascontiguousarray(x)


# Moments are measured on a copy whose short side is at most this many times the model's
# (a 12-megapixel scan would cost 50 ms otherwise; the box needs no finer a measure).
CONTENT_MEASURE_FACTOR = 2


def content_crop(pixels: np.ndarray, model_side: int) -> np.ndarray:
    """A square about the content of a grey or colour image, sized so that the content has
    MNIST's radius in it (``upright.models.framing``), where the content is smaller than the
    image: a digit at a random spot of a scanned page. Shrinking the whole page to the
    model's 28 pixels first would leave the digit a few pixels wide, and the model's own
    framing could only enlarge a blur. The square never goes below ``model_side`` source
    pixels; past the image's edges it is filled with the background (the median). Ink is
    what lies furthest from the median grey, on whichever side (dark content on light
    paper is found too); an image without contrast, or whose content fills it, is returned
    as it is."""
    import cv2

    from upright.models.framing import FRAMED_RADIUS, INK_FLOOR

    h, w = pixels.shape[:2]
    short = min(h, w)
    if short <= model_side:
        return pixels
    # Shrunk before it is made grey: a 12000x12000 scan never gets a full-size grey copy.
    factor = max(1.0, short / (CONTENT_MEASURE_FACTOR * model_side))
    small = pixels
    if factor > 1:
        size = (max(1, round(w / factor)), max(1, round(h / factor)))
        small = cv2.resize(np.ascontiguousarray(pixels), size, interpolation=cv2.INTER_AREA)
    grey = small if small.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2GRAY)
    # The background is the median; the ink lies on whichever side reaches further from it
    # (extremes at 0.1%: a digit may be under 2% of a page, where the levels rule's
    # percentiles would both fall on the paper).
    shares = (0.001, 0.5, 0.999)
    if grey.dtype == np.uint8:  # from a histogram: np.percentile cost half of the whole crop
        cumulative = np.bincount(grey.ravel(), minlength=256).cumsum()
        low, median, high = (float(v) for v in np.searchsorted(cumulative, np.array(shares) * grey.size))
    else:
        low, median, high = np.percentile(grey, [100 * v for v in shares])
    grey = grey.astype(np.float32)
    dark = median - low > high - median
    span = median - low if dark else high - median
    if span < 2 * (257 if pixels.dtype == np.uint16 else 1):
        return pixels
    ink = np.clip(((median - grey) if dark else (grey - median)) / span - INK_FLOOR, 0, None)
    # The sums of framing.ink_moments, in numpy: calling that on a tensor doubled the crop's
    # cost (0.25 -> 0.5 ms a photo view) for a few lines.
    columns, rows = ink.sum(axis=0), ink.sum(axis=1)
    mass = float(columns.sum())
    if mass <= 0:
        return pixels
    xs, ys = np.arange(len(columns), dtype=np.float32), np.arange(len(rows), dtype=np.float32)
    cx, cy = float(columns @ xs) / mass, float(rows @ ys) / mass
    spread = float(columns @ xs**2) / mass - cx**2 + float(rows @ ys**2) / mass - cy**2
    radius = float(np.sqrt(max(0.0, spread)))
    side = max(model_side, round(radius * factor / FRAMED_RADIUS))
    if side >= short:
        return pixels
    # Back to the source's pixel centres (the measure's pixel i covers source pixels
    # i * factor .. (i + 1) * factor).
    cx, cy = (cx + 0.5) * factor - 0.5, (cy + 0.5) * factor - 0.5
    left, top = round(cx - (side - 1) / 2), round(cy - (side - 1) / 2)
    inside = pixels[max(top, 0):min(top + side, h), max(left, 0):min(left + side, w)]
    pads = (max(0, -top), max(0, top + side - h), max(0, -left), max(0, left + side - w))
    if not any(pads):
        return inside
    fill = np.median(small.reshape(-1, 1 if small.ndim == 2 else small.shape[2]), axis=0)
    return cv2.copyMakeBorder(np.ascontiguousarray(inside), *pads, cv2.BORDER_CONSTANT,
                              value=[float(v) for v in fill])


def _resize(cv2, x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average when shrinking (a 24-megapixel photo becomes a thumbnail without
    aliasing), bilinear when enlarging; keeps a single channel axis off."""
    interp = cv2.INTER_AREA if size[0] < x.shape[1] or size[1] < x.shape[0] else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(x), size, interpolation=interp)
    return out[:, :, 0] if out.ndim == 3 and out.shape[2] == 1 else out

# Robust ends of an image's range: the 2nd and 98th percentiles, not min and max, so a few
# noisy pixels do not decide.
RANGE_PERCENTILE = 0.02


def _grey_statistics(images: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Median, low and high percentile of each image's grey level inside ``mask``."""
    grey = images.mean(dim=1).flatten(1)
    inside = torch.nonzero(mask.flatten() > 0).flatten()
    values = _sorted_rows(grey[:, inside])
    n = int(values.shape[1])  # a constant in an exported graph: the mask is fixed
    k = round(RANGE_PERCENTILE * (n - 1))
    median = 0.5 * (values[:, (n - 1) // 2] + values[:, n // 2])
    return median, values[:, k], values[:, n - 1 - k]


def _sorted_rows(values: torch.Tensor) -> torch.Tensor:
    """Each row sorted, ascending. On CPU through numpy, whose vectorised sort is ~10x
    torch's (the 784 grey levels of 1,024 digits: 4.3 against 48 ms on one AVX2 core; the
    same numbers); torch's where a graph is traced (ONNX export), a gradient is kept, or
    the tensor is on another device or of a type numpy has not."""
    if (values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64)
            and not values.requires_grad and not torch.jit.is_tracing()
            and not torch.onnx.is_in_onnx_export()):
        return torch.from_numpy(np.sort(values.numpy(), axis=1))
    return values.sort(dim=1).values


def _polarity(images: torch.Tensor, median: torch.Tensor, low: torch.Tensor,
              high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The images with those whose content is darker than their background inverted, and
    which were (a median above the middle of the p2-p98 range)."""
    invert = median > 0.5 * (low + high)
    return images + invert.to(images.dtype).view(-1, 1, 1, 1) * (1.0 - 2.0 * images), invert


def canonical_polarity(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Invert the images whose content is darker than their background."""
    return _polarity(images, *_grey_statistics(images, mask))[0]


def autocontrast(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Canonical polarity, then the robust range stretched to [0, 1]."""
    median, low, high = _grey_statistics(images, mask)
    x, invert = _polarity(images, median, low, high)
    # An inverted image's percentiles are the original's mirrored: no second sort (the sort
    # was a quarter of the prediction's time).
    low, high = torch.where(invert, 1.0 - high, low), torch.where(invert, 1.0 - low, high)
    span = (high - low).clamp_min(1.0 / 255).view(-1, 1, 1, 1)  # a blank image stays blank
    return ((x - low.view(-1, 1, 1, 1)) / span).clamp(0.0, 1.0)


def raw_levels(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return images


LEVELS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "raw": raw_levels,
    "polarity": canonical_polarity,
    "autocontrast": autocontrast,
}
