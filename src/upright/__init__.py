"""upright: learn the rotation angle of an image with a CNN and turn it back upright.

    import upright
    model = upright.load("mnist")            # a shipped model, or a run/model folder
    model.predict("scan.png").angle          # degrees, with .confidence
    model.upright("scan.png").save("fixed.png")
    upright.correct("scans/", "upright/")    # folders of files, as `upright correct`
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load", "correct", "__version__"]


def load(model: Any = "mnist", runtime: str = "torch", tta: bool = False):
    """A model to predict with (see ``upright.api.Model``): a shipped name or a folder."""
    from upright.api import load as _load  # torch and OpenCV load only when a model does

    return _load(model, runtime, tta)


def correct(paths: Any, output: Any, model: Any = "mnist", progress: bool = False, **options: Any):
    """Correct image files and folders into ``output``, as ``upright correct`` does."""
    from upright.api import correct as _correct

    return _correct(paths, output, model, progress, **options)
