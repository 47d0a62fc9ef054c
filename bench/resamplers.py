"""Benchmark: one model's circular MAE on the same test items rotated by every resampler
we know: ours (each training resampler, written as uint8) and other libraries' (Pillow
bicubic, Pillow's default nearest, OpenCV Lanczos-4). A model that reads shapes scores
about the same on all of them. Prints one JSON line per model.

    python bench/resamplers.py mnist faces runs/my-run --every 60   # 1 item in 60
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
from accuracy import protocol_test_set

from upright import checkpoint
from upright.data.rotated import RotatedSet, to_float_images, to_uint8_images
from upright.evaluation import OTHER_RESAMPLERS, predict_set, resampled_set, summarise
from upright.geometry import RESAMPLERS, rotate_batch

# Keys' parameter for our "cubic" here: Pillow's, the sharpest the training range draws.
CUBIC_A = -1.0


def resampled_sets(test: RotatedSet) -> dict[str, RotatedSet]:
    """The test items under each resampler, as uint8 images rotated in advance."""
    x = to_float_images(torch.from_numpy(test.images[test.source]))
    angles = torch.from_numpy(test.angles).float()
    items = np.arange(len(test))
    sets = {}
    for mode in RESAMPLERS:
        rotated = rotate_batch(x, angles, mode=mode, cubic_a=CUBIC_A)
        sets[f"ours_{mode}"] = RotatedSet(to_uint8_images(rotated), items, test.angles)
    for name in OTHER_RESAMPLERS:
        sets[name] = resampled_set(test, name)
    return sets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="shipped model names or run folders")
    parser.add_argument("--every", type=int, default=60,
                        help="score one test item in this many (default 60: 1,985 MNIST items)")
    args = parser.parse_args()
    if args.every < 1:
        parser.error("--every must be at least 1")
    for name in args.models:
        folder = checkpoint.model_folder(name)
        model, config = checkpoint.load(folder)
        dataset, test = protocol_test_set(config)
        test = RotatedSet(test.images, test.source[::args.every], test.angles[::args.every])
        standard = summarise(predict_set(model, test), test.angles)["circular_mae"]
        result = {"model": str(name), "dataset": dataset, "items": len(test),
                  "standard": round(standard, 3), "circular_mae": {}, "vs_standard": {}}
        for set_name, rotated in resampled_sets(test).items():
            mae = summarise(predict_set(model, rotated, prerotated=True), test.angles)["circular_mae"]
            result["circular_mae"][set_name] = round(mae, 3)
            result["vs_standard"][set_name] = round(mae / standard, 3)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
