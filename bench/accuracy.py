"""Benchmark: a model's accuracy on the full published test protocol of its dataset,
with and without test-time augmentation, and on test images rotated by Pillow (bicubic),
by Pillow's default (nearest neighbour) and by OpenCV (Lanczos-4, a resampler no training
mix uses) instead of ours. Prints one JSON line.

    python bench/accuracy.py --model mnist            # a shipped model or a run folder
    python bench/accuracy.py --recipe mnist-compact --budget 30m   # train first
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from upright import checkpoint
from upright.cli import parse_duration
from upright.data.rotated import RotatedSet, protocol_set
from upright.demo import RECIPE_OF_DATASET
from upright.evaluation import predict_set, resampled_set, summarise
from upright.experiments import RECIPES, make_config, prepare_data, train_run

# Each other resampler's set, and the JSON key of its MAE over the standard set's.
RATIO_KEYS = {"pillow_bicubic": "pillow_vs_standard_mae_ratio",
              "pillow_nearest": "pillow_nearest_vs_standard_mae_ratio",
              "opencv_lanczos": "lanczos_vs_standard_mae_ratio"}


def protocol_test_set(config: dict) -> tuple[str, RotatedSet]:
    """The dataset a saved model was trained on, and its full published test set."""
    dataset = config.get("data", {}).get("dataset", "mnist")
    recipe = make_config(RECIPE_OF_DATASET.get(dataset, "mnist-published"))
    _, splits = prepare_data(recipe)
    return dataset, protocol_set(splits.test.images, splits.test.indices, recipe.test_angles,
                                 recipe.eval_seed)


def evaluate_model(folder: Path) -> dict:
    model, config = checkpoint.load(folder)
    dataset, test = protocol_test_set(config)
    out: dict = {"dataset": dataset, "model": str(folder), "backbone": model.spec.backbone,
                 "head": model.spec.head}
    sets = (("standard", test, False, (False, True)),
            ("pillow_bicubic", resampled_set(test, "pillow_bicubic"), True, (False, True)),
            ("pillow_nearest", resampled_set(test, "pillow_nearest"), True, (False,)),
            ("opencv_lanczos", resampled_set(test, "opencv_lanczos"), True, (False,)))
    for name, rotated, prerotated, tta_options in sets:
        for tta in tta_options:
            started = time.perf_counter()
            pred = predict_set(model, rotated, 2048, tta=tta, prerotated=prerotated)
            key = name + ("_tta" if tta else "")
            out[key] = summarise(pred, rotated.angles)
            out[key]["seconds"] = round(time.perf_counter() - started, 2)
    for key, ratio in RATIO_KEYS.items():
        out[ratio] = round(out[key]["circular_mae"] / out["standard"]["circular_mae"], 3)
    out["tta_cost_ratio"] = round(out["standard_tta"]["seconds"] / out["standard"]["seconds"], 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="shipped model name or run folder")
    parser.add_argument("--recipe", choices=sorted(RECIPES), help="train this recipe first")
    parser.add_argument("--budget", type=parse_duration, default=600.0)
    args = parser.parse_args()
    if not args.model and not args.recipe:
        parser.error("give --model or --recipe")
    if args.recipe:
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            metrics = train_run(make_config(args.recipe, {"max_time": args.budget}), run,
                                progress=False, report=False)
            result = {"recipe": args.recipe, "budget_s": args.budget,
                      "training": metrics["training"], **evaluate_model(run)}
    else:
        result = evaluate_model(checkpoint.model_folder(args.model))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
