"""``upright quickstart``: the published MNIST recipe end to end, in minutes on a CPU."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from upright.angles import circular_error
from upright.correction import correct_paths
from upright.data.rotated import protocol_angles
from upright.evaluation import format_robustness, format_summary
from upright.experiments import prepare_data, train_run
from upright.geometry import rotate_image
from upright.predictors import load_predictor
from upright.recipes import make_config

SAMPLES = 16


def quickstart(runs_dir: Path, max_time: float, progress: bool = True,
               max_steps: int | None = None) -> Path:
    # Short epochs (4 angles per image instead of 20) so that validation, early stopping
    # and best-weight keeping all happen within minutes, and BatchNorm statistics that
    # follow 10x faster (momentum 0.9, not Keras' 0.99) so the few hundred steps of a
    # short run are enough for them to settle. Everything else is the published recipe.
    config = make_config("mnist-published", {
        "max_time": max_time, "max_steps": max_steps, "angles_per_epoch": 4, "val_angles": 2,
        "model": {"backbone_options": {"bn_momentum": 0.9}}})
    run_dir = Path(runs_dir) / f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}"
    steps = f" or {max_steps} steps" if max_steps else ""
    print(f"training the published MNIST recipe for at most {max_time:.0f} s{steps} into {run_dir}")
    metrics = train_run(config, run_dir, progress=progress)
    print(f"test:  {format_summary(metrics['test'])}")
    print(f"train: {format_summary(metrics['train'])}")
    for line in format_robustness(metrics):
        print(line)

    # Correct a few rotated test digits as real image files.
    _, splits = prepare_data(config)
    inputs, outputs = run_dir / "samples" / "rotated", run_dir / "samples" / "corrected"
    inputs.mkdir(parents=True, exist_ok=True)
    angles = protocol_angles(np.arange(SAMPLES), 1, seed=7)[:, 0]
    for i, angle in enumerate(angles):
        image = rotate_image(splits.test.images[i], float(angle))
        Image.fromarray(image).save(inputs / f"digit{i:02d}_rot{int(angle):+04d}.png")
    results = correct_paths([inputs], load_predictor(run_dir), outputs)
    errors = circular_error(np.array([r.angle for r in results]), angles.astype(np.float64))
    print(f"corrected {len(results)} sample digits (median error {np.median(errors):.1f} deg): "
          f"{inputs} -> {outputs}")
    print(f"run folder: {run_dir}")
    return run_dir
