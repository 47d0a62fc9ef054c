"""Olivetti faces: the MATLAB file that scikit-learn's fetcher downloads (40 people x 10)."""

from __future__ import annotations

import numpy as np

from upright.data.matfile import read_mat
from upright.data.mirror import fetch
from upright.data.source import SourceData

OLIVETTI_FILE = "olivettifaces.mat"
OLIVETTI_URLS = ("https://ndownloader.figshare.com/files/5976027",)
# sha256 of the decoded `faces` array (uint8, (4096, 400), C order): uploads of the
# same data with other MATLAB headers still match.
OLIVETTI_CONTENT_SHA256 = "7964c5cc44c85859441189f37c95bb64ac343e67b4fed0ca51e40c35ef12643b"
TRAIN_PEOPLE = 28  # people 1-28 train, 29-40 test (the article's split)
# The published pipeline scales with scikit-learn: (x - min) / (max - min) over the file,
# here min 0 and max 242. As (x/255 - mean) / std that is mean 0, std 242/255.
OLIVETTI_PIXEL_MAX = 242


def _decode_mat(raw: bytes) -> tuple[np.ndarray, bytes]:
    # MATLAB's format parsed field by field; nothing is unpickled.
    variables = read_mat(raw)
    if "faces" not in variables:
        raise ValueError(f"no 'faces' variable (found: {', '.join(variables) or 'none'})")
    faces = variables["faces"]
    if faces.shape != (4096, 400) or faces.dtype != np.uint8:
        raise ValueError(f"faces has shape {faces.shape} and type {faces.dtype}, "
                         "expected (4096, 400) uint8")
    return faces, np.ascontiguousarray(faces).tobytes()


def load_olivetti() -> SourceData:
    faces = fetch("olivetti", OLIVETTI_FILE, OLIVETTI_URLS, OLIVETTI_CONTENT_SHA256, _decode_mat)
    # One column-major 64x64 image per column (scikit-learn transposes each image).
    images = np.ascontiguousarray(faces.T.reshape(400, 64, 64).transpose(0, 2, 1))
    people = np.repeat(np.arange(40), 10)
    return SourceData(
        name="olivetti",
        images=images,
        groups=people,
        is_test=people >= TRAIN_PEOPLE,
        group_kind="person",
    )


