"""Metrics on rotated sets: circular errors first, the article's linear MAE beside them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from upright import distributed
from upright.angles import circular_difference
from upright.confidence import AngleBelief
from upright.data.rotated import RotatedSet, protocol_set, to_float_images
from upright.geometry import rotate_batch
from upright.models.model import AngleModel, for_inference

WITHIN_DEGREES = (1, 2, 5, 10)


def _batches_of(model: AngleModel, rotated: RotatedSet, batch_size: int, fill: float,
                desc: str | None, prerotated: bool):
    """The set's images as the model takes them, batch by batch (rotated on the fly). Under
    DDP each rank takes its contiguous share; the callers gather the answers in order."""
    start, stop = distributed.shard_bounds(len(rotated))
    rotated = RotatedSet(rotated.images, rotated.source[start:stop], rotated.angles[start:stop])
    model.eval()
    device = next(model.parameters()).device
    total = -(-len(rotated) // batch_size)
    for images, angles in tqdm(rotated.batches(batch_size), total=total, desc=desc,
                               disable=desc is None, leave=False):
        x = to_float_images(images.to(device))
        yield x if prerotated else rotate_batch(x, angles.to(device), fill)


@torch.no_grad()
def predict_set(model: AngleModel, rotated: RotatedSet, batch_size: int = 2048,
                fill: float = 0.0, desc: str | None = None, tta: bool = False,
                prerotated: bool = False) -> np.ndarray:
    """Predicted angles (degrees) for every item of a rotated set, in order.

    ``prerotated``: the set's images are already rotated (by another resampler); use them
    as they are."""
    parts = [model.predict_angles(x, tta=tta).cpu().numpy()
             for x in _batches_of(model, rotated, batch_size, fill, desc, prerotated)]
    return distributed.gather(np.concatenate(parts).astype(np.float32) if parts
                              else np.empty(0, np.float32))


@torch.no_grad()
def belief_set(model: AngleModel, rotated: RotatedSet, batch_size: int = 2048, fill: float = 0.0,
               temperature: float = 1.0, prerotated: bool = False) -> AngleBelief:
    """Angles, confidences and runner-ups for every item of a rotated set, in order."""
    parts = [model.predict_belief(x, temperature)
             for x in _batches_of(model, rotated, batch_size, fill, None, prerotated)]
    return AngleBelief(*(distributed.gather(np.concatenate([getattr(p, f) for p in parts]) if parts
                                            else np.empty(0))
                         for f in ("angle", "confidence", "second_angle", "second_mass")))


@torch.no_grad()
def raw_views_set(model: AngleModel, rotated: RotatedSet, batch_size: int = 2048,
                  fill: float = 0.0, prerotated: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's raw outputs on every item's four quarter-turn views (4, N, bins), and the
    items' angles as a belief gives them (``four_view_angle``: what calibration fits a
    temperature to)."""
    from upright.confidence import VIEWS, four_view_angle

    views, angles = [], []
    for x in _batches_of(model, rotated, batch_size, fill, None, prerotated):
        raw = model.quarter_turn_raw(x).float().cpu().view(VIEWS, len(x), -1)
        views.append(raw)
        angles.append(four_view_angle(model.head, raw.reshape(-1, raw.shape[-1])))
    if not views:
        return torch.empty(VIEWS, 0, model.head.out_features), torch.empty(0)
    return distributed.gather(torch.cat(views, dim=1), axis=1), distributed.gather(torch.cat(angles))


def summarise(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Circular MAE (primary), linear MAE (as published), median, p95, shares within N degrees."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    err = np.abs(circular_difference(pred, true))
    summary: dict[str, float] = {
        "count": int(len(err)),
        "circular_mae": float(err.mean()) if len(err) else float("nan"),
        "linear_mae": float(np.abs(pred - true).mean()) if len(err) else float("nan"),
        "median_error": float(np.median(err)) if len(err) else float("nan"),
        "p95_error": float(np.percentile(err, 95)) if len(err) else float("nan"),
    }
    for d in WITHIN_DEGREES:
        summary[f"within_{d}"] = float((err <= d).mean()) if len(err) else float("nan")
    return summary


def per_angle(pred: np.ndarray, true: np.ndarray) -> dict[str, dict[str, float]]:
    """Per true angle: median prediction (unwrapped around the truth, so a prediction of
    -179 for 175 counts as 181), the plain median prediction (as published) and the
    median circular error."""
    table: dict[str, dict[str, float]] = {}
    for angle in np.unique(true):
        sel = true == angle
        diff = circular_difference(pred[sel].astype(np.float64), float(angle))
        table[str(int(angle)) if float(angle).is_integer() else str(angle)] = {
            "count": int(sel.sum()),
            "median_prediction": float(angle + np.median(diff)),
            "median_prediction_linear": float(np.median(pred[sel])),
            "median_error": float(np.median(np.abs(diff))),
        }
    return table


def modulo_90_error(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Error ignoring whole quarter turns: what a model reading only the corners can get right."""
    d = np.abs(circular_difference(np.asarray(pred, np.float64), np.asarray(true, np.float64))) % 90
    return np.minimum(d, 90 - d)


def blank_content_set(images: np.ndarray, source_ids: np.ndarray, angles_per_image: int,
                      seed: int) -> RotatedSet:
    """The evaluation set with every image's content replaced by its mean grey level: after
    rotation only the black corners remain, so any skill left comes from the border cue."""
    flat = images.reshape(len(images), -1).mean(axis=1).round().astype(np.uint8)
    blank = np.broadcast_to(flat.reshape((-1,) + (1,) * (images.ndim - 1)), images.shape).copy()
    return protocol_set(blank, source_ids, angles_per_image, seed)


def border_cue(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Scores on blank-content images: chance is circular MAE 90 and 11% within 5 modulo 90."""
    mod90 = modulo_90_error(pred, true)
    return {**summarise(pred, true), "within_5_modulo_90": float((mod90 <= 5).mean()),
            "mae_modulo_90": float(mod90.mean())}


def robustness_metrics(model: AngleModel, items: RotatedSet, seed: int, batch_size: int,
                       fill: float = 0.0, progress: bool = False,
                       temperature: float | None = None) -> dict[str, Any]:
    """The robustness suite on ``items`` (every variant, its mean and worst) and, under
    "protocol", the same items turned by the protocol itself, for comparison. With a
    ``temperature`` (a calibrated distribution head) each variant's ECE too."""
    from upright import robustness

    def predict(made):
        if temperature is None:
            return predict_set(model, made, batch_size, prerotated=True)
        return belief_set(model, made, batch_size, temperature=temperature, prerotated=True)

    suite = robustness.score(predict, items, seed, progress=progress)
    # Predicted as the variants are: a calibrated head's beliefs (the four views' angle).
    protocol = (predict_set(model, items, batch_size, fill) if temperature is None
                else belief_set(model, items, batch_size, fill, temperature).angle)
    suite["protocol"] = summarise(protocol, items.angles)
    return suite


def format_summary(summary: dict[str, Any]) -> str:
    """One line a person can read."""
    return (f"circular MAE {summary['circular_mae']:.2f} deg, linear MAE "
            f"{summary['linear_mae']:.2f}, median {summary['median_error']:.2f}, "
            f"within 5 deg {100 * summary['within_5']:.1f}% ({summary['count']:,} images)")


def format_robustness(metrics: dict[str, Any]) -> list[str]:
    """The robustness suite's and the held-out variations' mean and worst, a line each."""
    lines = []
    suite = metrics.get("robustness", {})
    for key, label in (("suite", "robustness suite"), ("held_out", "held-out variations")):
        if key in suite:
            part = suite[key]
            lines.append(f"{label}: mean circular MAE {part['mean_circular_mae']:.2f} deg, worst "
                         f"{part['worst']} {part['worst_circular_mae']:.2f} deg, lowest within 5 "
                         f"deg {part['min_within_5']:.1%}")
    return lines


def calibrate(model: AngleModel, val_set: RotatedSet, batch_size: int, fill: float = 0.0) -> dict | None:
    """Fit the temperature of a distribution head on the validation items (None for heads
    without a distribution): the one that makes "confidence" the chance of being within
    5 degrees."""
    from upright.confidence import (
        WITHIN,
        calibration_report,
        fit_temperature,
        has_distribution,
        mass_near,
        view_probabilities,
    )

    model = for_inference(model)
    if not has_distribution(model.head) or len(val_set) == 0:
        return None
    views, angle = raw_views_set(model, val_set, batch_size, fill)
    raw_views = views.reshape(-1, views.shape[-1])
    correct = np.abs(circular_difference(angle.numpy().astype(np.float64), val_set.angles)) <= 5.0
    temperature = fit_temperature(model.head, raw_views, angle, correct)
    probs = view_probabilities(model.head, raw_views, temperature)
    confidence = mass_near(probs, model.head.centres, angle, WITHIN).numpy()
    return {"temperature": temperature, "fitted_on": "validation", "items": len(val_set),
            "validation_ece": calibration_report(confidence, correct)["ece"]}
