"""Benchmark: a model's accuracy on the full published test protocol of its dataset (with
and without test-time augmentation) and on the robustness suite: the same test items
turned by other means (pose, other libraries' resamplers, a physical turn, noise, JPEG,
a negative) and the held-out variations. Prints one JSON line.

    python bench/accuracy.py --model mnist            # a shipped model or a run folder
    python bench/accuracy.py --recipe mnist-compact --budget 30m   # train first
    python bench/accuracy.py --model mnist --every 10   # a tenth of the protocol items
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from upright import checkpoint, robustness
from upright.cli import parse_duration
from upright.data.rotated import RotatedSet
from upright.evaluation import predict_set, robustness_metrics, summarise
from upright.experiments import prepare_data, protocol_test_set, saved_model_protocol, train_run
from upright.recipes import RECIPES, make_config


def saved_protocol(config: dict) -> tuple[str, RotatedSet]:
    """The dataset a saved model was trained on, and its full published test set."""
    recipe = saved_model_protocol(config)
    _, splits = prepare_data(recipe)
    return recipe.dataset, protocol_test_set(recipe, splits)


def suite_items(config: dict) -> tuple[RotatedSet, int]:
    """The robustness suite's items for a saved model's dataset, and their seed."""
    recipe = saved_model_protocol(config)
    _, splits = prepare_data(recipe)
    return robustness.suite_items(splits.test.images, splits.test.indices, recipe.suite_angles,
                                  recipe.eval_seed), recipe.eval_seed


def evaluate_model(folder: Path, every: int = 1) -> dict:
    model, config = checkpoint.load(folder)
    dataset, test = saved_protocol(config)
    test = RotatedSet(test.images, test.source[::every], test.angles[::every])
    out: dict = {"dataset": dataset, "model": str(folder), "backbone": model.spec.backbone,
                 "head": model.spec.head, "levels": model.spec.levels}
    for tta in (False, True):
        started = time.perf_counter()
        pred = predict_set(model, test, 512, tta=tta)
        key = "protocol" + ("_tta" if tta else "")
        out[key] = summarise(pred, test.angles)
        out[key]["seconds"] = round(time.perf_counter() - started, 2)
    out["tta_cost_ratio"] = round(out["protocol_tta"]["seconds"] / out["protocol"]["seconds"], 2)
    items, seed = suite_items(config)
    out["robustness"] = robustness_metrics(model, items, seed, 512)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="shipped model name or run folder")
    parser.add_argument("--recipe", choices=sorted(RECIPES), help="train this recipe first")
    parser.add_argument("--budget", type=parse_duration, default=600.0)
    parser.add_argument("--every", type=int, default=1,
                        help="score one protocol test item in this many (default: all)")
    args = parser.parse_args()
    if not args.model and not args.recipe:
        parser.error("give --model or --recipe")
    if args.every < 1:
        parser.error("--every must be at least 1")
    if args.recipe:
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            metrics = train_run(make_config(args.recipe, {"max_time": args.budget}), run,
                                progress=False, report=False)
            result = {"recipe": args.recipe, "budget_s": args.budget,
                      "training": metrics["training"], **evaluate_model(run, args.every)}
    else:
        result = evaluate_model(checkpoint.model_folder(args.model), args.every)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
