"""Benchmark: a model's accuracy by the turn's distance from the nearest quarter turn, for
three ways of turning. Prints one JSON line.

    python bench/grid_cue.py --model mnist [--model RUN ...]

A digitally turned image keeps an imprint of its source's pixel grid (nearest-neighbour
stairs, the direction of bilinear smoothing) at the turn's angle modulo 90 degrees,
whatever the digit's own slant: a model could read the angle modulo 90 from it. How much
of that pattern there is depends on the distance from a quarter turn, so per model and
rotation (OpenCV bilinear as the protocol turns, Pillow nearest, and the suite's
"physical" turn: upsampled 8x, turned, area-downsampled, no resampler pattern at the
original scale but softer) this gives the share within 5 degrees and the median error per
band of that distance, on the suite's items of the model's test protocol. Models trained
on a dataset with a published protocol (MNIST, Olivetti) only.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from upright import checkpoint, robustness
from upright.evaluation import predict_set, summarise
from upright.experiments import prepare_data, saved_model_protocol
from upright.models.model import for_inference

# Degrees from the nearest quarter turn: [low, high) bands.
BANDS = ((0, 2), (2, 10), (10, 20), (20, 35), (35, 46))
ROTATIONS = {"protocol (OpenCV bilinear)": None, "Pillow nearest": "pillow_nearest",
             "physical (supersampled)": "physical"}


def by_band(pred: np.ndarray, true: np.ndarray) -> dict[str, dict[str, float]]:
    off_quarter = np.abs((true + 45) % 90 - 45)
    bands = {f"{low}-{min(high, 45)}": (off_quarter >= low) & (off_quarter < high) for low, high in BANDS}
    bands["all"] = np.ones(len(true), bool)
    table = {}
    for name, chosen in bands.items():
        summary = summarise(pred[chosen], true[chosen])
        table[name] = {"count": summary["count"], "within_5": round(summary["within_5"], 4),
                       "median_error": round(summary["median_error"], 2)}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True,
                        help="a shipped model name or a run/model folder (repeatable)")
    args = parser.parse_args()
    result: dict = {"benchmark": "grid_cue", "models": {}}
    for name in args.model:
        model, info = checkpoint.load(name)
        model = for_inference(model)
        config = saved_model_protocol(info)
        _, splits = prepare_data(config)
        items = robustness.suite_items(splits.test.images, splits.test.indices, config.suite_angles,
                                       config.eval_seed)
        rows = {}
        for label, variant in ROTATIONS.items():
            chosen = items if variant is None else robustness.variant_set(items, variant, config.eval_seed)
            pred = predict_set(model, chosen, config.eval_batch_size, config.fill, tta=True,
                               prerotated=variant is not None)
            rows[label] = by_band(pred, items.angles)
        result["models"][name] = rows
    print(json.dumps(result))


if __name__ == "__main__":
    main()
