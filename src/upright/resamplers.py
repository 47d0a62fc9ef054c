"""Other ways to turn an image, for evaluation only: other libraries' rotations, and a
rotation with no resampler pattern at all (``physical``). Each takes one uint8 image
(H, W) or (H, W, C) and a counter-clockwise angle in degrees and returns uint8 of the same
shape, black fill. A model that reads shapes scores about the same on all of them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from upright.data.rotated import RotatedSet
from upright.geometry import PROTOCOL_CENTRE, centre_of, rotate_image

# physical: the image is upsampled this many times, turned, and box-averaged back down.
PHYSICAL_FACTOR = 8


def pillow_bicubic(image: np.ndarray, angle: float) -> np.ndarray:
    """Pillow's ``rotate(angle, BICUBIC)`` about its default centre (Keys a = -1, truncated
    to 8 bits)."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).rotate(angle, resample=Image.BICUBIC, fillcolor=0))


def pillow_nearest(image: np.ndarray, angle: float) -> np.ndarray:
    """``Image.rotate(angle)`` with no resample argument: what most scripts do."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).rotate(angle, fillcolor=0))


def opencv_lanczos(image: np.ndarray, angle: float) -> np.ndarray:
    """OpenCV's Lanczos-4 (8x8 windowed sinc, in no training mix) about the article centre."""
    return rotate_image(image, angle, interpolation="lanczos4", centre=PROTOCOL_CENTRE)


def physical(image: np.ndarray, angle: float) -> np.ndarray:
    """What a scanner or camera sees of a turned page: the image upsampled 8x (bicubic, as a
    smooth stand-in for the continuous shape), turned at that size, and area-averaged back
    to its pixels, which leaves no resampler pattern at the original scale."""
    import cv2

    k = PHYSICAL_FACTOR
    h, w = image.shape[:2]
    big = cv2.resize(image.astype(np.float32), (w * k, h * k), interpolation=cv2.INTER_CUBIC)
    cx, cy = centre_of(PROTOCOL_CENTRE, w, h)
    # cv2.resize maps big pixel j to small coordinate (j + 0.5) / k - 0.5.
    matrix = cv2.getRotationMatrix2D((k * (cx + 0.5) - 0.5, k * (cy + 0.5) - 0.5), float(angle), 1.0)
    turned = cv2.warpAffine(big, matrix, (w * k, h * k), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    small = cv2.resize(turned, (w, h), interpolation=cv2.INTER_AREA)
    return np.clip(np.round(small), 0, 255).astype(np.uint8).reshape(image.shape)


OTHER_RESAMPLERS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "pillow_bicubic": pillow_bicubic,
    "pillow_nearest": pillow_nearest,
    "opencv_lanczos": opencv_lanczos,
    "physical": physical,
}


def resampled_set(rotated: RotatedSet, resampler: str = "pillow_bicubic") -> RotatedSet:
    """The same (image, angle) items turned by another resampler instead of ours (uint8,
    as that library writes them)."""
    if resampler not in OTHER_RESAMPLERS:
        raise ValueError(f"unknown resampler {resampler!r}; choose from {', '.join(OTHER_RESAMPLERS)}")
    rotate = OTHER_RESAMPLERS[resampler]
    out = np.empty((len(rotated),) + rotated.images.shape[1:], dtype=np.uint8)
    for i, (src, angle) in enumerate(zip(rotated.source, rotated.angles, strict=True)):
        out[i] = rotate(rotated.images[src], float(angle))
    return RotatedSet(out, np.arange(len(rotated)), rotated.angles)
