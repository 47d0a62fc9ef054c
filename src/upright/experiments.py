"""Named recipes and whole jobs: train a run folder, evaluate it, report its numbers."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from upright import checkpoint, fileio, robustness
from upright.config import TrainConfig
from upright.data.registry import load_source
from upright.data.rotated import (
    RotatedSet,
    fixed_angle_set,
    protocol_angles,
    protocol_set,
    to_float_images,
    to_uint8_images,
)
from upright.data.source import SourceData, Splits, split_source
from upright.errors import DatasetError, UserError
from upright.evaluation import (
    blank_content_set,
    border_cue,
    per_angle,
    predict_set,
    robustness_metrics,
    summarise,
)
from upright.geometry import rotate_batch
from upright.models.model import AngleModel

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.npz"
SAMPLES_FILE = "samples.npz"
BLANK_CONTENT_IMAGES = 1000  # test images whose blanked copies measure the border cue

def prepare_data(config: TrainConfig) -> tuple[SourceData, Splits]:
    source = load_source(config.dataset, image_size=config.image_size, aspect=config.aspect,
                         colour=config.colour, test_fraction=config.test_fraction,
                         seed=config.seed)
    splits = split_source(source, config.val_fraction, config.seed, config.excluded_groups,
                          config.limit)
    return source, splits


def fit_input_format(config: TrainConfig, source: SourceData) -> None:
    """The model's input size and channels follow the data."""
    shape = source.images.shape
    config.model.height, config.model.width = int(shape[1]), int(shape[2])
    config.model.channels = 1 if len(shape) == 3 else int(shape[3])
    config.model.aspect = config.aspect
    if len(config.model.mean) != config.model.channels:
        config.model.mean = [config.model.mean[0]] * config.model.channels
        config.model.std = [config.model.std[0]] * config.model.channels


# A run folder holds one of these; a folder with none of them is not replaced by --overwrite.
RUN_MARKERS = (CONFIG_FILE, "model.json", METRICS_FILE)
MIN_SPLIT_IMAGES = 1  # each of train, validation and test needs at least this many sources


class RunExistsError(UserError, ValueError):
    """A run folder of that name is there already (and --overwrite was not given)."""


def train_run(config: TrainConfig, run_dir: str | Path, progress: bool = True, report: bool = True,
              command: str | None = None, overwrite: bool = True) -> dict[str, Any]:
    """Train a recipe into ``run_dir``, then evaluate it (and write its report unless told
    not to); returns metrics.json's content. Without ``overwrite`` an existing run folder is
    an error; with it, the old run is removed first so nothing stale is left beside the new
    one. A run that fails leaves no folder behind it made."""
    from upright.training import fit  # Lightning is slow to import: only when training

    run_dir = Path(run_dir)
    _claim_run_folder(run_dir, overwrite)
    source, splits = prepare_data(config)
    _check_splits(config, splits)
    fit_input_format(config, source)
    del source  # the splits hold copies; the whole source would only add to peak memory
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fileio.write_json(run_dir / CONFIG_FILE, config.to_dict())
        torch.manual_seed(config.seed)
        model = AngleModel(config.model)
        training = fit(model, splits, config, run_dir, progress=progress)
        info = {"data": _data_info(config, splits), "training": training,
                "made_by": made_by(command)}
        checkpoint.save(run_dir, model, info)
    except BaseException:
        if created:  # nothing half-made: the folder this run made goes with it
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return evaluate_run(run_dir, model=model, splits=splits, progress=progress, report=report)


def _claim_run_folder(run_dir: Path, overwrite: bool) -> None:
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise RunExistsError(f"{run_dir}: exists and is not a folder")
    if not any(run_dir.iterdir()):
        return
    if not overwrite:
        raise RunExistsError(f"{run_dir}: a run of that name exists; pass --overwrite to replace "
                             "it or --name to choose another")
    if not any((run_dir / marker).exists() for marker in RUN_MARKERS):
        raise RunExistsError(f"{run_dir}: exists and is not a run folder; not replacing it")
    shutil.rmtree(run_dir)


def _check_splits(config: TrainConfig, splits: Splits) -> None:
    """Too few images for a train, validation and test split: say so before any training."""
    sizes = {"train": len(splits.train), "validation": len(splits.val), "test": len(splits.test)}
    short = [name for name, n in sizes.items() if n < MIN_SPLIT_IMAGES]
    if short:
        total = sum(sizes.values())
        raise DatasetError(f"{config.dataset}: {total} usable image(s) give "
                         + ", ".join(f"{n} {name}" for name, n in sizes.items())
                         + f"; every split needs at least {MIN_SPLIT_IMAGES} (add images)")


def made_by(command: str | None) -> dict[str, Any]:
    """How a run was made: the command line and the versions that matter."""
    import platform

    import upright

    return {"command": command or "", "upright": upright.__version__, "torch": torch.__version__,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def _data_info(config: TrainConfig, splits: Splits) -> dict[str, Any]:
    return {
        "dataset": config.dataset,
        "excluded_groups": config.excluded_groups,
        "images": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "test_angles": config.test_angles,
        "eval_seed": config.eval_seed,
    }


def load_run_config(run_dir: str | Path) -> TrainConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (is {run_dir} a run folder?)")
    return TrainConfig.from_dict(json.loads(path.read_text()))


def evaluate_run(run_dir: str | Path, model: AngleModel | None = None,
                 splits: Splits | None = None, progress: bool = True,
                 report: bool = True) -> dict[str, Any]:
    """Evaluate a run's model on its data protocol; writes metrics.json and predictions.npz."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    if model is None:
        model, _ = checkpoint.load(run_dir)
    if splits is None:
        _, splits = prepare_data(config)
    started = time.perf_counter()
    bs, fill = config.eval_batch_size, config.fill

    def run_set(name, images, source_ids, angles_per_image, seed):
        rotated = protocol_set(images, source_ids, angles_per_image, seed)
        pred = predict_set(model, rotated, bs, fill, desc=f"evaluate {name}" if progress else None)
        return rotated, pred

    test_set, test_pred = run_set("test", splits.test.images, splits.test.indices,
                                  config.test_angles, config.eval_seed)
    n_train = min(config.train_eval_images, len(splits.train))
    train_set, train_pred = run_set("train", splits.train.images[:n_train],
                                    splits.train.indices[:n_train], config.test_angles,
                                    config.eval_seed + 2)
    n_blank = min(BLANK_CONTENT_IMAGES, len(splits.test))
    blank = blank_content_set(splits.test.images[:n_blank], splits.test.indices[:n_blank],
                              config.test_angles, config.eval_seed)
    blank_pred = predict_set(model, blank, bs, fill)
    _save_samples(run_dir / SAMPLES_FILE, model, splits, config)
    fixed = fixed_angle_set(splits.test.images)
    fixed_pred = predict_set(model, fixed, bs, fill, desc="evaluate fixed angles" if progress else None)
    items = robustness.suite_items(splits.test.images, splits.test.indices, config.suite_angles,
                                   config.eval_seed)
    suite = robustness_metrics(model, items, config.eval_seed, bs, fill, progress)

    metrics = {
        "test": summarise(test_pred, test_set.angles),
        "train": summarise(train_pred, train_set.angles),
        "fixed_angles": {**summarise(fixed_pred, fixed.angles),
                         "per_angle": per_angle(fixed_pred, fixed.angles)},
        "per_group": _per_group(test_pred, test_set, splits),
        "blank_content": border_cue(blank_pred, blank.angles),
        "robustness": suite,
        "training": checkpoint.read_config(run_dir).get("training", {}),
        "evaluation_seconds": round(time.perf_counter() - started, 2),
    }
    fileio.write_json(run_dir / METRICS_FILE, metrics)
    fileio.write_with(run_dir / PREDICTIONS_FILE, lambda tmp: np.savez_compressed(
        str(tmp),
        test_source=splits.test.indices[test_set.source], test_group=splits.test.groups[test_set.source],
        test_true=test_set.angles, test_pred=test_pred,
        fixed_source=splits.test.indices[fixed.source], fixed_true=fixed.angles,
        fixed_pred=fixed_pred,
    ))
    model_info = checkpoint.read_config(run_dir)
    model_info["metrics"] = {"test": metrics["test"], "train": metrics["train"],
                             "robustness": {k: suite[k] for k in ("suite", "held_out") if k in suite}}
    checkpoint.write_config(run_dir, model.spec,
                            {k: v for k, v in model_info.items() if k not in ("format", "model")})
    if report:
        from upright.report import write_report  # matplotlib: only when drawing

        write_report(run_dir)
    return metrics


def _save_samples(path: Path, model: AngleModel, splits: Splits, config: TrainConfig) -> None:
    """A seeded shuffle's first test images, rotated, with predictions: for the before/after grid."""
    order = np.random.default_rng(config.eval_seed).permutation(len(splits.test))[:config.grid_images]
    angles = protocol_angles(splits.test.indices[order], 1, config.eval_seed + 3)[:, 0]
    rotated = RotatedSet(splits.test.images, order, angles)
    pred = predict_set(model, rotated, config.eval_batch_size, config.fill)
    images = rotate_batch(to_float_images(torch.from_numpy(splits.test.images[order])),
                          torch.from_numpy(angles.astype(np.float32)), config.fill)
    pixels = to_uint8_images(images)
    fileio.write_with(path, lambda tmp: np.savez_compressed(
        str(tmp), images=pixels, true=angles, pred=pred, source=splits.test.indices[order]))


def _per_group(pred: np.ndarray, rotated, splits: Splits) -> dict[str, dict[str, float]]:
    groups = splits.test.groups[rotated.source]
    return {str(int(g)): summarise(pred[groups == g], rotated.angles[groups == g])
            for g in np.unique(groups)}
