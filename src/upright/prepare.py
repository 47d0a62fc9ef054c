"""What the model sees: grey levels made comparable before the network.

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

import torch

# Robust ends of an image's range: the 2nd and 98th percentiles, not min and max, so a few
# noisy pixels do not decide.
RANGE_PERCENTILE = 0.02


def _grey_statistics(images: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Median, low and high percentile of each image's grey level inside ``mask``."""
    grey = images.mean(dim=1).flatten(1)
    inside = torch.nonzero(mask.flatten() > 0).flatten()
    values = grey[:, inside].sort(dim=1).values
    n = int(values.shape[1])  # a constant in an exported graph: the mask is fixed
    k = round(RANGE_PERCENTILE * (n - 1))
    median = 0.5 * (values[:, (n - 1) // 2] + values[:, n // 2])
    return median, values[:, k], values[:, n - 1 - k]


def canonical_polarity(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Invert the images whose content is darker than their background."""
    median, low, high = _grey_statistics(images, mask)
    invert = (median > 0.5 * (low + high)).to(images.dtype).view(-1, 1, 1, 1)
    return images + invert * (1.0 - 2.0 * images)


def autocontrast(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Canonical polarity, then the robust range stretched to [0, 1]."""
    x = canonical_polarity(images, mask)
    _, low, high = _grey_statistics(x, mask)
    span = (high - low).clamp_min(1.0 / 255).view(-1, 1, 1, 1)  # a blank image stays blank
    return ((x - low.view(-1, 1, 1, 1)) / span).clamp(0.0, 1.0)


def raw_levels(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return images


LEVELS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "raw": raw_levels,
    "polarity": canonical_polarity,
    "autocontrast": autocontrast,
}
