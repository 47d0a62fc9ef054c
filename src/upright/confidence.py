"""Knowing when not to rotate: calibrated confidence and the runner-up angle.

A head with a distribution over the circle (``bins``) gives, per image, the probability
that the decoded angle is within 5 degrees of the truth: the mass within +-5 degrees of it
of the distributions of the image's four exact quarter turns, turned back and averaged,
after a temperature fitted on the validation split. A shape with an up agrees with itself
under those turns; noise or a blank page does not, so its mass spreads. And the runner-up
mode: the most likely angle at least ``RUNNER_UP_GAP`` degrees from the first, with its
mass (a 0, 1 or 8 shows one 180 degrees away). Heads without a distribution report no
confidence: None, not an invented number.

``fit_temperature`` chooses the temperature that minimises the log loss of "within 5
degrees" on held-out predictions; ``calibration_report`` gives the expected calibration
error and the reliability diagram's bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from upright.angles import circular_difference

WITHIN = 5.0  # degrees: what "right" means, as in the article's headline figure
# Below this confidence `correct` copies an image through untouched: turning it would more
# likely do harm than good.
DEFAULT_MIN_CONFIDENCE = 0.5
RUNNER_UP_GAP = 30.0  # degrees between the first mode and a runner-up
MODE_HALF_WIDTH = 10.0  # degrees either side of a mode counted as its mass
MIN_RUNNER_UP_MASS = 0.05  # below this a runner-up is noise, not reported
RELIABILITY_BINS = 10
TEMPERATURES = np.exp(np.linspace(np.log(0.1), np.log(10.0), 47))
VIEWS = 4  # the image and its three exact quarter turns


@dataclass
class AngleBelief:
    """Per image: the angle, the probability it is within 5 degrees, the runner-up mode."""

    angle: np.ndarray
    confidence: np.ndarray  # NaN where the head has no distribution
    second_angle: np.ndarray  # NaN where no runner-up holds real mass
    second_mass: np.ndarray
    # (N, bins) the calibrated distribution over the circle, bin centres from -180 + width / 2;
    # None where the head has none
    distribution: np.ndarray | None = None

    @classmethod
    def without_confidence(cls, angles: np.ndarray) -> AngleBelief:
        """Angles from a model with no distribution to say how sure it is (NaN elsewhere)."""
        nan = np.full(len(angles), np.nan)
        return cls(np.asarray(angles, np.float64), nan, nan.copy(), nan.copy())


def has_distribution(head: torch.nn.Module) -> bool:
    return hasattr(head, "centres")


def probabilities(raw: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    return F.softmax(raw.float() / temperature, dim=1)


def mass_near(probs: torch.Tensor, centres: torch.Tensor, angle: torch.Tensor,
              half_width: float) -> torch.Tensor:
    """Probability mass within ``half_width`` degrees of each image's ``angle``."""
    near = circular_difference(centres[None, :], angle.float()[:, None]).abs() <= half_width
    return (probs * near).sum(dim=1)


def quarter_turn_views(images: torch.Tensor) -> torch.Tensor:
    """The images and their three exact quarter turns, stacked view by view (4N, C, H, W)."""
    return torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(VIEWS)])


def view_probabilities(head: torch.nn.Module, raw_views: torch.Tensor, temperature: float) -> torch.Tensor:
    """The distributions of the four quarter-turn views, each turned back to the image's
    frame, averaged (N, bins). A shape with an up agrees with itself under exact quarter
    turns; noise, a blank page or a symmetric shape does not, and its mass spreads out."""
    bins = head.centres.numel()
    probs = probabilities(raw_views, temperature).view(VIEWS, -1, bins)
    step = bins // 4  # a quarter turn in bins (the head's bin count is a multiple of 4)
    return torch.stack([torch.roll(probs[k], shifts=-k * step, dims=1) for k in range(VIEWS)]).mean(0)


def four_view_angle(head: torch.nn.Module, raw_views: torch.Tensor) -> torch.Tensor:
    """The angle of the four quarter-turn views' distributions, turned back and averaged
    (at the model's own temperature: calibration does not move the angle). The views are
    computed for the confidence anyway, and their mean is a sharper estimate than the first
    view alone: on the shipped MNIST model's protocol 69.5% within 5 degrees against 67.1%,
    and better than averaging the four views' decoded angles (68.6%)."""
    probs = view_probabilities(head, raw_views, 1.0)
    return head.decode(torch.log(probs.clamp_min(1e-30)))


def one_view_as_four(raw: torch.Tensor, bins: int) -> torch.Tensor:
    """Raw outputs of one view (N, bins) laid out as four quarter-turn views whose turning
    back (``view_probabilities``) gives the one view's distribution again: for inputs that
    cannot be turned by a quarter in place (not square)."""
    step = bins // VIEWS
    return torch.cat([torch.roll(raw, shifts=k * step, dims=1) for k in range(VIEWS)])


def belief(head: torch.nn.Module, raw_views: torch.Tensor, angle: torch.Tensor,
           temperature: float = 1.0) -> AngleBelief:
    """Confidence and runner-up for decoded ``angle`` from the head's raw outputs on the
    four quarter-turn views (``quarter_turn_views``)."""
    if not has_distribution(head):
        return AngleBelief.without_confidence(angle.numpy())
    centres = head.centres
    probs = view_probabilities(head, raw_views, temperature)
    confidence = mass_near(probs, centres, angle, WITHIN)
    far = circular_difference(centres[None, :], angle.float()[:, None]).abs() > RUNNER_UP_GAP
    second = centres[(probs * far).argmax(dim=1)]
    second_mass = mass_near(probs, centres, second, MODE_HALF_WIDTH)
    real = second_mass >= MIN_RUNNER_UP_MASS
    return AngleBelief(
        angle.numpy().astype(np.float64),
        confidence.clamp(0, 1).numpy().astype(np.float64),
        torch.where(real, second, torch.full_like(second, float("nan"))).numpy().astype(np.float64),
        torch.where(real, second_mass, torch.zeros_like(second_mass)).numpy().astype(np.float64),
        probs.numpy().astype(np.float32),
    )


def confidence_at(head: torch.nn.Module, raw_views: torch.Tensor, angle: torch.Tensor,
                  temperatures: np.ndarray) -> np.ndarray:
    """(len(temperatures), N) confidences of the decoded angles at each temperature."""
    return np.stack([mass_near(view_probabilities(head, raw_views, t), head.centres, angle, WITHIN).numpy()
                     for t in temperatures])


def fit_temperature(head: torch.nn.Module, raw_views: torch.Tensor, angle: torch.Tensor,
                    correct: np.ndarray) -> float:
    """The temperature whose confidences best predict ``correct`` (error <= 5 degrees),
    by log loss over a grid from 0.1 to 10."""
    conf = np.clip(confidence_at(head, raw_views, angle, TEMPERATURES), 1e-6, 1 - 1e-6)
    hits = correct.astype(np.float64)[None, :]
    loss = -(hits * np.log(conf) + (1 - hits) * np.log(1 - conf)).mean(axis=1)
    return float(TEMPERATURES[int(np.argmin(loss))])


def calibration_report(confidence: np.ndarray, correct: np.ndarray,
                       bins: int = RELIABILITY_BINS) -> dict:
    """Expected calibration error and the reliability diagram (equal-width confidence bins:
    mean confidence, share correct, count)."""
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        chosen = which == b
        count = int(chosen.sum())
        if count:
            conf, acc = float(confidence[chosen].mean()), float(correct[chosen].mean())
            ece += count / len(confidence) * abs(conf - acc)
            rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "confidence": conf,
                         "within_5": acc, "count": count})
    return {"ece": float(ece), "mean_confidence": float(confidence.mean()),
            "within_5": float(correct.mean()), "bins": rows}


def selective_accuracy(confidence: np.ndarray, correct: np.ndarray,
                       thresholds: np.ndarray | None = None) -> list[dict]:
    """Coverage (share accepted) and within-5 among the accepted, per confidence threshold."""
    thresholds = np.round(np.linspace(0.0, 0.95, 20), 2) if thresholds is None else thresholds
    rows = []
    for t in thresholds:
        accepted = confidence >= t
        rows.append({"threshold": float(t), "coverage": float(accepted.mean()),
                     "within_5_accepted": float(correct[accepted].mean()) if accepted.any() else None})
    return rows
