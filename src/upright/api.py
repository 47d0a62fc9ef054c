"""The Python API every interface stands on: load a model, predict angles, turn images upright.

    >>> import upright
    >>> model = upright.load("mnist")                # a shipped name, or a run/model folder
    >>> result = model.predict("scan.png")           # or a numpy array, a PIL image, a list
    >>> result.angle, result.confidence              # degrees; chance it is within 5 degrees
    >>> fixed = model.upright("scan.png")            # the corrected image (PIL in, PIL out)

``upright.correct(paths, output)`` corrects files and folders exactly as the command does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from upright.confidence import DEFAULT_MIN_CONFIDENCE
from upright.errors import UserError

ImageLike = Any  # numpy array (H, W) or (H, W, C), a PIL image, or a path to an image file


@dataclass(frozen=True)
class Prediction:
    angle: float  # degrees, counter-clockwise; turn by minus this to make the image upright
    confidence: float | None  # calibrated chance the angle is within 5 degrees; None: no distribution
    second_angle: float | None = None  # the runner-up mode, where one holds real mass
    second_mass: float | None = None
    # the calibrated distribution over the circle (bins from -180 degrees up); None: no distribution
    distribution: np.ndarray | None = field(default=None, repr=False, compare=False)


def _pixels(image: ImageLike, min_side: int | None = None) -> tuple[np.ndarray, str | None]:
    """Decoded pixels and their mode from any accepted kind of image; ``min_side``: only a
    view to predict from is needed (a JPEG file is then decoded reduced, as ``correct``
    does, so both give the same angle)."""
    from upright.imagefiles import from_pil, read_image

    if isinstance(image, (str, os.PathLike)):
        decoded = read_image(image, min_side=min_side)
        return decoded.pixels, decoded.mode
    if isinstance(image, Image.Image):
        if 0 in image.size:
            raise UserError(f"not an image: a PIL image of size {image.size} holds no pixels")
        decoded = from_pil(image)
        return decoded.pixels, decoded.mode
    array = np.asarray(image)
    if array.size == 0:
        raise UserError(f"not an image: an array of shape {array.shape} holds no pixels")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise UserError("a float image must hold values in [0, 1]")
        array = np.round(array * 255).astype(np.uint8)
    if array.dtype not in (np.uint8, np.uint16) or array.ndim not in (2, 3) or (
            array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise UserError(f"not an image: an array of shape {array.shape} and type {array.dtype} "
                        "(expected (H, W) or (H, W, C) with C 1-4, uint8, uint16 or float in [0, 1])")
    return array, None


def _is_batch(images: Any) -> bool:
    """A list or tuple; a 4-D array (N, H, W, C); or a 3-D array whose last side is more
    than 4 (N grey images, (N, H, W): a colour image has 1-4 channels there)."""
    if isinstance(images, (list, tuple)):
        return True
    return isinstance(images, np.ndarray) and (images.ndim == 4 or (images.ndim == 3 and images.shape[2] > 4))


class Model:
    """A loaded model: ``predict`` angles, turn images ``upright``."""

    def __init__(self, predictor, name: str) -> None:
        self.predictor = predictor
        self.name = name
        self.spec = predictor.spec

    def __repr__(self) -> str:
        return f"upright.Model({self.name!r}, {self.spec.backbone} + {self.spec.head})"

    def predict(self, images: ImageLike | Sequence[ImageLike]) -> Prediction | list[Prediction]:
        """One Prediction for one image; a list for a list (or a 4-D array) of images."""
        from upright.correction import view_side

        batch = list(images) if _is_batch(images) else [images]
        results = self._predict_pixels([_pixels(image, view_side(self.spec)) for image in batch])
        return results if _is_batch(images) else results[0]

    def _predict_pixels(self, decoded: list[tuple[np.ndarray, str | None]]) -> list[Prediction]:
        from upright.correction import model_input

        if not decoded:
            return []
        inputs = np.stack([model_input(pixels, self.spec, mode) for pixels, mode in decoded])
        b = self.predictor.predict_belief(inputs)
        return [Prediction(float(b.angle[i]), _number(b.confidence[i]), _number(b.second_angle[i]),
                           _number(b.second_mass[i]) if np.isfinite(b.second_angle[i]) else None,
                           None if b.distribution is None else b.distribution[i])
                for i in range(len(decoded))]

    def upright(self, image: ImageLike, canvas: str = "same",
                fill: tuple[int, ...] | str | int = (0, 0, 0),
                min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> np.ndarray | Image.Image:
        """The image turned upright by minus its predicted angle (``canvas``: same, expand
        or crop; ``fill``: the corners' colour, RGB or RGBA, a name or a grey level). Below
        ``min_confidence`` (the command's default) it comes back unturned: a blank page is
        not turned. A PIL image or a path
        gives a PIL image (an array for 16-bit colour, which PIL cannot hold); an array
        gives an array."""
        from upright.correction import CorrectOptions, turned_pixels
        from upright.imagefiles import DecodedImage

        # The same checks and messages as ``correct``, before any work.
        options = CorrectOptions(canvas=canvas, fill=fill, min_confidence=min_confidence)
        pixels, mode = _pixels(image)
        # A file is predicted from the view correct predicts from; turned whole.
        is_file = isinstance(image, (str, os.PathLike))
        prediction = self.predict(image) if is_file else self._predict_pixels([(pixels, mode)])[0]
        unsure = prediction.confidence is not None and prediction.confidence < options.min_confidence
        decoded = DecodedImage(pixels, "PNG", mode or "")
        turned = pixels if unsure else turned_pixels(decoded, -prediction.angle, canvas, options.fill)
        if isinstance(image, np.ndarray) or (turned.dtype == np.uint16 and turned.ndim == 3):
            return turned
        if turned.ndim == 3 and turned.shape[2] == 1:
            turned = turned[:, :, 0]
        if mode in ("CMYK", "LAB", "YCbCr"):
            size = (turned.shape[1], turned.shape[0])
            return Image.frombytes(mode, size, np.ascontiguousarray(turned).tobytes())
        return Image.fromarray(turned)


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def load(model: str | os.PathLike = "mnist", runtime: str = "torch", tta: bool = False) -> Model:
    """A shipped model by name (``mnist``, ``faces``) or a run or model folder."""
    from upright.predictors import load_predictor

    return Model(load_predictor(model, runtime, tta=tta), str(model))


def correct(paths: str | os.PathLike | Sequence[str | os.PathLike], output: str | os.PathLike | None,
            model: str | os.PathLike | Model = "mnist", progress: bool = False, **options: Any):
    """Correct image files and folders into ``output`` (what ``upright correct`` runs);
    ``options`` are CorrectOptions' fields (canvas, fill, threshold, min_confidence,
    dry_run, overwrite, jpeg_quality, ...). Returns the rows, with ``.report`` the CSV."""
    from upright.correction import CorrectOptions, correct_paths

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    predictor = model.predictor if isinstance(model, Model) else load(model).predictor
    try:
        settings = CorrectOptions(**options)
    except TypeError as exc:
        raise UserError(f"correct: {exc}") from None
    return correct_paths([Path(p) for p in paths], predictor, output, settings, progress=progress)
