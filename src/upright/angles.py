"""Angle maths in degrees: the one place that knows an angle lives on a circle.

Every function works on numpy arrays and torch tensors alike (and Python floats).
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Plain constants, not torch.deg2rad/rad2deg: ONNX export has no operator for those.
DEG2RAD = math.pi / 180.0
RAD2DEG = 180.0 / math.pi


def wrap(angle_deg):
    """Wrap angles into [-180, 180)."""
    return (angle_deg + 180.0) % 360.0 - 180.0


def circular_difference(a_deg, b_deg):
    """Signed smallest difference a - b, in [-180, 180)."""
    return wrap(a_deg - b_deg)


def circular_error(pred_deg, true_deg):
    """Absolute circular error in [0, 180]."""
    diff = circular_difference(pred_deg, true_deg)
    if isinstance(diff, torch.Tensor):
        return diff.abs()
    return np.abs(diff)


def circular_mean(angles_deg, weights=None, axis: int = -1):
    """Mean direction of angles (optionally weighted), in [-180, 180)."""
    if isinstance(angles_deg, torch.Tensor):
        rad = angles_deg * DEG2RAD
        w = torch.ones_like(rad) if weights is None else weights
        s = (w * torch.sin(rad)).sum(dim=axis)
        c = (w * torch.cos(rad)).sum(dim=axis)
        return wrap(torch.atan2(s, c) * RAD2DEG)
    rad = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    w = np.ones_like(rad) if weights is None else np.asarray(weights, dtype=np.float64)
    s = (w * np.sin(rad)).sum(axis=axis)
    c = (w * np.cos(rad)).sum(axis=axis)
    return wrap(np.rad2deg(np.arctan2(s, c)))


def from_unit_vector(cos, sin):
    """Angle in degrees of the vector (cos, sin), in [-180, 180)."""
    if isinstance(cos, torch.Tensor):
        return wrap(torch.atan2(sin, cos) * RAD2DEG)
    return wrap(np.rad2deg(np.arctan2(sin, cos)))


def to_unit_vector(angle_deg):
    """(cos, sin) of angles in degrees."""
    if isinstance(angle_deg, torch.Tensor):
        rad = angle_deg * DEG2RAD
        return torch.cos(rad), torch.sin(rad)
    rad = np.deg2rad(angle_deg) if not isinstance(angle_deg, float) else math.radians(angle_deg)
    return np.cos(rad), np.sin(rad)
