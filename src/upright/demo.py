"""``upright demo``: see a shipped model work at once.

Rotates sample MNIST test digits at random angles, writes them as PNG files, corrects them
with the shipped model through the ordinary ``correct`` path, and writes a before/after
grid and the metrics on the full published test protocol.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from upright import checkpoint, fileio
from upright.angles import circular_error
from upright.correction import CorrectOptions, correct_paths
from upright.data.rotated import protocol_angles, protocol_set
from upright.evaluation import format_summary, predict_set, summarise
from upright.experiments import prepare_data
from upright.geometry import PROTOCOL_CENTRE, rotate_image
from upright.plots import mosaic
from upright.predictors import load_predictor
from upright.recipes import make_config

RECIPE_OF_DATASET = {"mnist": "mnist-published", "olivetti": "faces-published"}


def demo(outdir: Path, model: str = "mnist", count: int = 64, seed: int = 0,
         progress: bool = True) -> dict:
    outdir = Path(outdir)
    _, config = checkpoint.load(checkpoint.model_folder(model))
    suite = config.get("metrics", {}).get("robustness", {}).get("suite")
    dataset = config.get("data", {}).get("dataset", "mnist")
    _, splits = prepare_data(make_config(RECIPE_OF_DATASET.get(dataset, "mnist-published")))
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(splits.test), size=min(count, len(splits.test)), replace=False)
    angles = protocol_angles(splits.test.indices[picks], 1, seed + 99)[:, 0]
    rotated_dir, corrected_dir = outdir / "rotated", outdir / "corrected"
    rotated_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for pick, angle in zip(picks, angles, strict=True):
        name = f"test{splits.test.indices[pick]:05d}_rot{int(angle):+04d}.png"
        turned = rotate_image(splits.test.images[pick], float(angle), centre=PROTOCOL_CENTRE)
        Image.fromarray(turned).save(rotated_dir / name)
        names.append(name)
    predictor = load_predictor(model)
    results = correct_paths([rotated_dir], predictor, corrected_dir,
                            CorrectOptions(overwrite=True), progress=progress)
    by_name = {Path(r.file).name: r for r in results}
    errors = circular_error(np.array([by_name[n].angle for n in names]), angles.astype(np.float64))
    before = [np.asarray(Image.open(rotated_dir / n)) for n in names]
    after = [np.asarray(Image.open(corrected_dir / n)) for n in names]
    columns = int(np.ceil(np.sqrt(len(names))))
    left, right = mosaic(before, columns), mosaic(after, columns)
    grid = np.concatenate([left, np.full((left.shape[0], 12), 255, np.uint8), right], 1)
    grid = np.asarray(Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3),
                                                   Image.NEAREST))
    fileio.write_with(outdir / "before_after.png", lambda tmp: Image.fromarray(grid).save(tmp, "PNG"))

    # The model on the whole published test protocol (every test image at 20 angles).
    full = protocol_set(splits.test.images, splits.test.indices, 20, 2024)
    pred = predict_set(predictor.model, full, 2048, desc="test protocol" if progress else None)
    metrics = {"model": str(model), "samples": len(names),
               "sample_median_error": float(np.median(errors)),
               "sample_max_error": float(np.max(errors)), "test": summarise(pred, full.angles)}
    fileio.write_json(outdir / "metrics.json", metrics)
    print(f"{len(names)} rotated digits: {rotated_dir}; corrected: {corrected_dir}")
    print(f"before/after grid: {outdir / 'before_after.png'}")
    print(f"sample median error {metrics['sample_median_error']:.2f} deg; full test protocol: "
          f"{format_summary(metrics['test'])}")
    if suite:
        print(f"robustness suite (the model card's figures: test images turned by other means): "
              f"mean circular MAE {suite['mean_circular_mae']:.2f} deg, worst {suite['worst']} "
              f"{suite['worst_circular_mae']:.2f} deg")
    print(json.dumps(metrics["test"]))
    return metrics
