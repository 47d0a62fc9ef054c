"""Benchmark: how much of a model's error on the test protocol is each test image's own lean.

Every protocol test image is turned to 20 angles. A model that reads the shape makes,
for one image, nearly the same signed error at every turn: the image looks turned by that
much (a digit written leaning). This splits the error into that per-image offset and the
rest, says what an oracle that knew each offset would reach, whether another model (a
different seed or recipe) sees the same offsets, whether the confidence tells the leaning
images apart, and the largest coverage at which the accepted images reach a share within 5
degrees. Prints one JSON line.

    python bench/lean.py --model mnist [--other RUN] [--every 4]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from accuracy import saved_protocol  # bench/accuracy.py: the script's folder is on the path

from upright import checkpoint
from upright.angles import circular_difference
from upright.data.rotated import RotatedSet
from upright.evaluation import belief_set
from upright.predictors import temperature_of

FLIP = 30.0  # errors beyond this are flips or failures, not a lean: left out of the offsets
MIN_TURNS = 10  # an image's offset needs this many of its turns within FLIP


def signed_errors(model_name: str, every: int) -> tuple[RotatedSet, np.ndarray, np.ndarray]:
    """The protocol items of every ``every``-th test image (all their turns), the signed
    errors and the confidences (the model's own temperature)."""
    model, info = checkpoint.load(model_name)  # a run folder or a shipped model's name
    _, test = saved_protocol(info)
    kept = np.isin(test.source, np.unique(test.source)[::every])
    items = RotatedSet(test.images, test.source[kept], test.angles[kept])
    belief = belief_set(model, items, 1024, temperature=temperature_of(info))
    return items, circular_difference(belief.angle, items.angles), belief.confidence


def per_image_offsets(source: np.ndarray, error: np.ndarray) -> dict[int, float]:
    """Each image's mean signed error over its turns within FLIP (images with too few left out)."""
    offsets = {}
    for image in np.unique(source):
        e = error[(source == image) & (np.abs(error) < FLIP)]
        if len(e) >= MIN_TURNS:
            offsets[int(image)] = float(e.mean())
    return offsets


def largest_coverage(confidence: np.ndarray, hit: np.ndarray, share: float) -> float:
    """The largest share of items, most confident first, whose hit rate is >= ``share``."""
    ranked = hit[np.argsort(-confidence, kind="stable")].astype(float)
    rate = np.cumsum(ranked) / np.arange(1, len(ranked) + 1)
    ok = np.flatnonzero(rate >= share)
    return float((ok.max() + 1) / len(ranked)) if len(ok) else 0.0


def lean_report(items: RotatedSet, error: np.ndarray, confidence: np.ndarray) -> dict:
    offsets = per_image_offsets(items.source, error)
    has = np.array([s in offsets for s in items.source]) & (np.abs(error) < FLIP)
    offset = np.array([offsets.get(int(s), 0.0) for s in items.source])
    within = np.abs(error) <= 5
    oracle = np.abs(circular_difference(error, offset)) <= 5
    lean = np.abs(offset)
    groups = {"under_2": lean < 2, "2_to_5": (lean >= 2) & (lean <= 5), "over_5": lean > 5}
    return {
        "items": int(len(error)), "images": len(offsets),
        "within_5": round(float(within.mean()), 4),
        "error_std": round(float(error[has].std()), 2),
        "offset_std": round(float(np.std(list(offsets.values()))), 2),
        "within_image_std": round(float((error - offset)[has].std()), 2),
        "between_image_variance_share": round(float(1 - (error - offset)[has].var() / error[has].var()), 3),
        "oracle_within_5": round(float(oracle.mean()), 4),
        "by_lean": {k: {"share": round(float(g.mean()), 3), "within_5": round(float(within[g].mean()), 3),
                        "mean_confidence": round(float(confidence[g].mean()), 3)}
                    for k, g in groups.items() if g.any()},
        "largest_coverage_at": {str(s): round(largest_coverage(confidence, within, s), 4)
                                for s in (0.995, 0.99, 0.95, 0.9)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist", help="shipped model name or run folder")
    parser.add_argument("--other", help="a second model of the same protocol: do its offsets agree?")
    parser.add_argument("--every", type=int, default=4, help="one test image in this many (all its turns)")
    args = parser.parse_args()
    if args.every < 1:
        parser.error("--every must be at least 1")
    items, error, confidence = signed_errors(args.model, args.every)
    out = {"benchmark": "lean", "model": args.model, **lean_report(items, error, confidence)}
    if args.other:
        other_items, other_error, _ = signed_errors(args.other, args.every)
        if not np.array_equal(other_items.source, items.source):
            parser.error("--other was tested on other images (another protocol)")
        a, b = per_image_offsets(items.source, error), per_image_offsets(items.source, other_error)
        both = sorted(set(a) & set(b))
        x, y = np.array([a[i] for i in both]), np.array([b[i] for i in both])
        out["other"] = {"model": args.other, "within_5": round(float((np.abs(other_error) <= 5).mean()), 4),
                        "offset_std": round(float(y.std()), 2),
                        "offset_correlation": round(float(np.corrcoef(x, y)[0, 1]), 3)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
