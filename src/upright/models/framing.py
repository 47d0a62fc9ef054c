"""Framing: where the content sits in the model's input, and how large, brought into the
range the network was trained on before it reads the image (in every path, as the levels).

A digit in a user's file is seldom where MNIST put it, nor as large: a crop with a wide
margin, a digit at half size, one pushed to a corner. Training draws shifts and scales
from a range; outside it the network has never looked. ``moments`` measures the ink's
centre of mass and RMS radius and, where they lie outside a band around MNIST's own (the
range training covers), moves and scales the image just enough to bring them to the
band's edge. Inside the band the image is passed through untouched (resampling every
image would blur the fine detail the angle is read from). Both measures are properties
of the shape, not of its angle: the centre of mass turns with the image and the radius
does not change, so framing commutes with any rotation about the centre (up to
resampling) and cannot carry the label.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from upright.geometry import grid_of_theta

# MNIST digits' mean RMS ink radius (6.7 px of 28, after autocontrast).
FRAMED_RADIUS = 0.24  # of the short side
# Left as they are: a radius within these factors of FRAMED_RADIUS (MNIST's 1st-99th
# percentile is 0.81-1.24; the shipped recipes scale by 0.8-1.2 on top) and a centre of
# mass within this share of the short side from the centre (they shift by up to 3 px of
# 28 on each axis). Narrower bands resample more of the images training covers (a model
# that framed every image was 1.8 degrees less precise); wider ones leave more outliers.
# Large content is rarely a problem (a digit cropped tight to fill the frame reads as
# well unshrunk) and shrinking stripes made them look like content: the upper edge is wide.
RADIUS_BAND = (0.75, 1.6)
CENTRE_BAND = 0.12
INK_FLOOR = 0.2  # grey levels below this (after the levels rule) are background noise, not ink
# Source pixels per output pixel: at most 4x enlarged (a digit a quarter of the band's
# size), at most 2.5x shrunk (a uniform noise field has radius 0.41 of the side).
ZOOM_RANGE = (0.25, 2.5)
MIN_INK = 1.0  # total ink (pixels at full strength) below which an image is left as it is


def no_framing(images: torch.Tensor) -> torch.Tensor:
    return images


def ink_moments(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: total ink, centre of mass (x, y) in pixels from the input's centre, and the
    RMS radius about it in pixels; ink is the channel mean above ``INK_FLOOR``."""
    _, _, h, w = images.shape
    ink = (images.mean(dim=1) - INK_FLOOR).clamp_min(0.0)
    xs = torch.arange(w, dtype=ink.dtype, device=ink.device) - (w - 1) / 2
    ys = torch.arange(h, dtype=ink.dtype, device=ink.device) - (h - 1) / 2
    columns, rows = ink.sum(dim=1), ink.sum(dim=2)  # (N, W), (N, H)
    mass = columns.sum(dim=1)
    safe = mass.clamp_min(1e-6)
    cx, cy = (columns * xs).sum(dim=1) / safe, (rows * ys).sum(dim=1) / safe
    spread = (columns * xs**2).sum(dim=1) / safe - cx**2 + (rows * ys**2).sum(dim=1) / safe - cy**2
    return mass, cx, cy, spread.clamp_min(0.0).sqrt()


def frame_by_moments(images: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W), background near 0, whose ink lies off centre or is too small or
    too large for the band, moved and scaled onto its edge (bilinear, black outside); the
    rest, and images with next to no ink, are returned exactly as they are."""
    _, _, h, w = images.shape
    side = min(h, w)
    mass, cx, cy, radius = ink_moments(images)
    ratio = radius / (FRAMED_RADIUS * side)
    zoom = (ratio / ratio.clamp(*RADIUS_BAND)).clamp(*ZOOM_RANGE)
    # The centre of mass goes to the nearest point of the disc of radius CENTRE_BAND * side
    # (a disc, not a square: the same for every angle).
    distance = torch.sqrt(cx**2 + cy**2)
    keep = (CENTRE_BAND * side / distance.clamp_min(1e-6)).clamp(max=1.0)
    empty = mass < MIN_INK
    zoom = torch.where(empty, torch.ones_like(zoom), zoom)
    keep = torch.where(empty, torch.ones_like(keep), keep)
    # Output pixel offset d (pixels from the centre) samples the input at
    # c + zoom * (d - keep * c), so the centre of mass c lands at keep * c; in grid_sample's
    # normalised coordinates (align_corners=False) a pixel is 2 / side.
    tx, ty = cx * (1 - zoom * keep), cy * (1 - zoom * keep)
    zeros = torch.zeros_like(zoom)
    theta = torch.stack([torch.stack([zoom, zeros, 2 * tx / w], dim=1),
                         torch.stack([zeros, zoom, 2 * ty / h], dim=1)], dim=1)
    # Only the images that move are resampled (most do not: resampling them all cost 4% of
    # the shipped model's inference).
    moved = torch.nonzero((zoom != 1.0) | (keep != 1.0)).squeeze(1)
    grid = grid_of_theta(theta[moved].to(torch.float32), h, w).to(images.dtype)
    framed = F.grid_sample(images[moved], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return images.index_copy(0, moved, framed)


FRAMINGS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": no_framing,
    "moments": frame_by_moments,
}
