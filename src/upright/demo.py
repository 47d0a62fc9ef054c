"""``upright demo``: see a shipped model work at once, offline.

Turns sample test images shipped inside the package (``upright.data.samples``) at random
angles, writes them as PNG files, corrects them with the model through the ordinary
``correct`` path, and draws a labelled before/after grid. Then, where the dataset is at
hand (the mirror, the cache or a download), adds the model's figures on the full published
test protocol; where it is not, says how to get it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from upright import checkpoint, fileio
from upright.angles import circular_error
from upright.correction import CorrectOptions, correct_paths
from upright.data.mirror import MIRROR_ENV, DataUnavailableError
from upright.data.mnist import DEFAULT_EXCLUDED_DIGITS
from upright.data.rotated import protocol_angles
from upright.data.samples import load_samples
from upright.errors import UserError
from upright.evaluation import format_summary, predict_set, summarise
from upright.experiments import RECIPE_OF_DATASET, prepare_data, protocol_test_set, saved_model_protocol
from upright.geometry import PROTOCOL_CENTRE, rotate_image
from upright.plots import labelled_before_after
from upright.predictors import load_predictor

DEFAULT_EXCLUDED = {"mnist": DEFAULT_EXCLUDED_DIGITS, "olivetti": ()}


def demo(outdir: Path, model: str = "mnist", count: int = 64, seed: int = 0,
         progress: bool = True, full: bool = True) -> dict:
    outdir = Path(outdir)
    _, info = checkpoint.load(checkpoint.model_folder(model))
    data = info.get("data", {})
    dataset = data.get("dataset", "mnist")
    if dataset not in RECIPE_OF_DATASET:
        raise UserError(f"{model}: trained on {dataset}; the demo has samples of mnist and olivetti only")
    excluded = data.get("excluded_groups")
    excluded = DEFAULT_EXCLUDED[dataset] if excluded is None else excluded
    samples = load_samples(dataset)
    usable = np.flatnonzero(~np.isin(samples.groups, excluded))
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(usable, size=min(count, len(usable)), replace=False))
    angles = protocol_angles(samples.indices[picks], 1, seed + 99)[:, 0]
    rotated_dir, corrected_dir = outdir / "rotated", outdir / "corrected"
    rotated_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for pick, angle in zip(picks, angles, strict=True):
        name = f"test{samples.indices[pick]:05d}_rot{int(angle):+04d}.png"
        turned = rotate_image(samples.images[pick], float(angle), centre=PROTOCOL_CENTRE)
        fileio.write_with(rotated_dir / name, lambda tmp, t=turned: Image.fromarray(t).save(tmp, "PNG"))
        names.append(name)
    predictor = load_predictor(model)
    results = correct_paths([rotated_dir], predictor, corrected_dir,
                            CorrectOptions(overwrite=True), progress=progress)
    by_name = {Path(r.file).name: r for r in results}
    predicted = np.array([by_name[n].angle for n in names])
    errors = circular_error(predicted, angles.astype(np.float64))
    before = [np.asarray(Image.open(rotated_dir / n)) for n in names]
    after = [np.asarray(Image.open(corrected_dir / n)) for n in names]
    labelled_before_after(before, after, predicted, angles, outdir / "before_after.png")
    metrics: dict = {"model": str(model), "samples": len(names),
                     "sample_median_error": float(np.median(errors)),
                     "sample_within_5": float(np.mean(errors <= 5.0)),
                     "sample_max_error": float(np.max(errors))}
    kind = "digits" if dataset == "mnist" else "faces"
    print(f"{len(names)} turned {kind}: {rotated_dir}; corrected: {corrected_dir}")
    print(f"before/after grid: {outdir / 'before_after.png'}")
    print(f"samples: median error {metrics['sample_median_error']:.2f} deg, "
          f"{100 * metrics['sample_within_5']:.0f}% within 5 deg")
    suite = info.get("metrics", {}).get("robustness", {}).get("suite")
    if suite:
        print(f"robustness suite (the model card's figures: test images turned by other means): "
              f"mean circular MAE {suite['mean_circular_mae']:.2f} deg, worst {suite['worst']} "
              f"{suite['worst_circular_mae']:.2f} deg")
    if full:
        metrics["test"] = _full_protocol(dataset, data, predictor, progress)
    fileio.write_json(outdir / "metrics.json", metrics)
    return metrics


def _full_protocol(dataset: str, data: dict, predictor, progress: bool) -> dict | None:
    """The model on the whole published test protocol, as its card states it; None (and how
    to get the data) when the dataset cannot be had."""
    config = saved_model_protocol({"data": data})
    try:
        _, splits = prepare_data(config)
    except DataUnavailableError as exc:
        print(f"full test protocol skipped: {exc}\n  (it needs the {dataset} files: a network "
              f"connection, or {MIRROR_ENV} naming a folder that holds them)")
        return None
    full = protocol_test_set(config, splits)
    pred = predict_set(predictor.model, full, 2048, desc="test protocol" if progress else None)
    test = summarise(pred, full.angles)
    print(f"full test protocol: {format_summary(test)}")
    print(json.dumps(test))
    return test
