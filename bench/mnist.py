"""Benchmark: train a recipe on the full rotated-MNIST protocol under a time budget.

Prints one JSON line: test and train metrics, samples seen, training images/s, peak RSS
(of training alone, and of the whole run with its evaluation).
Needs the MNIST files (download, or UPRIGHT_DATA_MIRROR naming a local mirror folder).

    python bench/mnist.py --budget 600 --recipe mnist-published
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from upright.cli import parse_assignment, parse_duration
from upright.config import coerce
from upright.experiments import train_run
from upright.recipes import RECIPES, make_config
from upright.training import peak_rss_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="mnist-published", choices=sorted(RECIPES))
    parser.add_argument("--budget", type=parse_duration, default=600.0,
                        help="training time budget (default 10m)")
    parser.add_argument("--set", action="append", type=parse_assignment, default=[],
                        metavar="KEY=VALUE", help="any setting, as `upright train --set`, e.g. "
                                                  "batch_size=256 or model.head=bins")
    parser.add_argument("--run-dir", type=Path, help="keep the run folder here")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()

    overrides = {"max_time": args.budget, **{key: coerce(key, text) for key, text in args.set}}
    config = make_config(args.recipe, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or Path(tmp) / "run"
        metrics = train_run(config, run_dir, progress=args.progress)
    training = metrics["training"]
    result = {
        "benchmark": "mnist",
        "recipe": args.recipe,
        "overrides": {key: text for key, text in args.set},
        "budget_s": args.budget,
        "test": metrics["test"],
        "train": metrics["train"],
        "fixed_angles_circular_mae": metrics["fixed_angles"]["circular_mae"],
        "epochs": training["epochs"],
        "samples_seen": training["samples_seen"],
        "train_seconds": training["train_seconds"],
        "train_images_per_s": training["images_per_second"],
        "evaluation_seconds": metrics["evaluation_seconds"],
        "train_peak_rss_mb": training.get("peak_rss_mb"),  # training and validation only
        "peak_rss_mb": peak_rss_mb(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
