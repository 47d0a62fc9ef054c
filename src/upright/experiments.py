"""Whole jobs: train a run folder, evaluate a model on its data protocol, re-evaluate a run."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from upright import checkpoint, robustness
from upright.angles import circular_difference
from upright.confidence import DEFAULT_MIN_CONFIDENCE, calibration_report, selective_accuracy
from upright.config import ConfigError, TrainConfig
from upright.data.registry import load_source
from upright.data.rotated import (
    RotatedSet,
    fixed_angle_set,
    protocol_angles,
    protocol_set,
    to_float_images,
    to_uint8_images,
)
from upright.data.source import SourceData, Splits, in_memory, split_source
from upright.errors import DatasetError, UserError
from upright.evaluation import (
    belief_set,
    blank_content_set,
    border_cue,
    calibrate,
    per_angle,
    predict_set,
    robustness_metrics,
    summarise,
)
from upright.geometry import rotate_batch
from upright.models.model import AngleModel, ModelSpec, for_inference
from upright.runs import RunExistsError, RunFolder

__all__ = ["RunExistsError", "train_run", "evaluate", "evaluate_run", "prepare_data",
           "protocol_test_set", "saved_model_protocol"]

BLANK_CONTENT_IMAGES = 1000  # test images whose blanked copies measure the border cue


def prepare_data(config: TrainConfig) -> tuple[SourceData, Splits]:
    """The source and its splits. A streamed folder's validation and test images are read
    into memory here (``num_workers`` processes reading); its training images stay on disk."""
    source = load_source(config.dataset, image_size=config.image_size, aspect=config.aspect,
                         colour=config.colour, test_fraction=config.test_fraction,
                         seed=config.seed, cache=config.cache, workers=config.num_workers)
    splits = split_source(source, config.val_fraction, config.seed, config.excluded_groups,
                          config.limit)
    splits.val = in_memory(splits.val, config.num_workers)
    splits.test = in_memory(splits.test, config.num_workers)
    return source, splits


def fit_input_format(config: TrainConfig, source: SourceData) -> None:
    """The model's input size and channels follow the data."""
    shape = source.images.shape
    _set_input(config.model, int(shape[1]), int(shape[2]), 1 if len(shape) == 3 else int(shape[3]))
    config.model.aspect = config.aspect


def _set_input(spec: ModelSpec, height: int, width: int, channels: int) -> None:
    """A spec's input size and channels, with one mean and std per channel."""
    spec.height, spec.width, spec.channels = height, width, channels
    if len(spec.mean) != channels:
        spec.mean, spec.std = [spec.mean[0]] * channels, [spec.std[0]] * channels


MIN_SPLIT_IMAGES = 1  # each of train, validation and test needs at least this many sources


def train_run(config: TrainConfig, run_dir: str | Path, progress: bool = True, report: bool = True,
              command: str | None = None, overwrite: bool = True) -> dict[str, Any]:
    """Train a recipe into ``run_dir``, then evaluate it (and write its report unless told
    not to); returns metrics.json's content. Without ``overwrite`` an existing run folder is
    an error; with it, the old run is replaced whole (nothing stale is left beside the new
    one), and only once the new one is: the run is made in a folder beside it, so a run
    that fails or is stopped leaves no folder behind and an earlier run as it was."""
    from upright.training import fit, make_trainer  # Lightning is slow to import: only here

    run = RunFolder(run_dir)
    run.check_claim(overwrite)  # refuses before anything is made or read
    config.dataset = whole_dataset_path(config.dataset)  # the run is evaluated from anywhere
    build_model(expected_input(config), torch.device("meta"))  # a bad network setting too
    staged = run.staging()
    try:
        trainer = make_trainer(config, staged.path, progress)
        writer = trainer.is_global_zero  # under DDP, rank 0 alone writes the run folder
        source, splits = prepare_data(config)
        _check_splits(config, splits)
        fit_input_format(config, source)
        del source  # the splits hold copies; the whole source would only add to peak memory
        if writer:
            staged.write_config(config)
        torch.manual_seed(config.seed)
        model = build_model(config.model)
        training = fit(model, splits, config, staged.path, progress=progress and writer, trainer=trainer)
        calibration = calibrate(model, validation_set(config, splits), config.eval_batch_size, config.fill)
        result = evaluate(model, splits, config, progress and writer, calibration)
        result.metrics["training"] = training
        if writer:
            checkpoint.save(staged.path, model, {"data": _data_info(config, splits), "training": training,
                                                 "made_by": made_by(command), "calibration": calibration,
                                                 "metrics": card_metrics(result.metrics)})
            _write_evaluation(staged, result)
            run.check_claim(overwrite)  # still what it was when the run began
            run.publish(staged)
    finally:
        staged.remove()  # gone once published; else (a failure, a stop, a rank > 0) not wanted
    if report and writer:
        from upright.report import write_report  # matplotlib: only when drawing

        write_report(run.path)
    return result.metrics


def whole_dataset_path(dataset: str) -> str:
    """``folder:PATH`` with PATH made whole (as a run records it); other datasets as given."""
    kind, _, folder = dataset.partition(":")
    return f"folder:{Path(folder).expanduser().resolve()}" if kind == "folder" else dataset


# The input size and channels each built-in source gives (a folder's follow its settings).
SOURCE_INPUTS = {"mnist": (28, 28, 1), "olivetti": (64, 64, 1)}


def expected_input(config: TrainConfig) -> ModelSpec:
    """The model spec with the input the data will give it (``fit_input_format`` sets it
    from the data itself): a network that cannot take that size is refused before the
    data is read."""
    import copy

    kind = config.dataset.partition(":")[0]
    height, width, channels = SOURCE_INPUTS.get(kind) or (
        config.image_size, config.image_size, 3 if config.colour == "rgb" else 1)
    spec = copy.deepcopy(config.model)
    _set_input(spec, height, width, channels)
    return spec


def build_model(spec: ModelSpec, device: torch.device | None = None) -> AngleModel:
    """The network a config's model settings describe; a setting it cannot take (an option
    the backbone or head does not have, 0 bins, a size the layers cannot reduce) is one
    ConfigError naming the settings, not a traceback."""
    try:
        checkpoint.check_spec(spec.to_dict())
        return checkpoint.build(spec, device)
    except (TypeError, ValueError) as exc:  # ModelBuildError is a ValueError
        raise ConfigError(f"model settings ({spec.backbone} + {spec.head}): {exc}") from None


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
        "images": drawn_counts(splits),
        "test_sha256": test_fingerprint(splits),
        "test_angles": config.test_angles,
        "eval_seed": config.eval_seed,
    }


def drawn_counts(splits: Splits) -> dict[str, int]:
    """The images drawn into each split, read or not (``Subset.drawn``): what a run records
    and ``evaluate`` checks, the same whichever way a folder was read."""
    return {"train": splits.train.drawn, "val": splits.val.drawn, "test": splits.test.drawn}


def test_fingerprint(splits: Splits) -> str:
    """The sha256 of the test images' pixels, in order: a folder whose test files were
    swapped or edited keeps its counts but not this (5 ms for MNIST's 5,953 digits)."""
    images = np.ascontiguousarray(splits.test.images)
    digest = hashlib.sha256(f"{images.dtype.str}{images.shape}".encode())
    digest.update(images.tobytes())  # (a memoryview cannot take an empty test split)
    return digest.hexdigest()


def load_run_config(run_dir: str | Path) -> TrainConfig:
    return RunFolder(run_dir).config()


def protocol_test_set(config: TrainConfig, splits: Splits) -> RotatedSet:
    """The published test protocol of a config: every test image at ``test_angles`` seeded
    integer angles (``eval_seed``). The one definition for evaluation, demo and benches."""
    return protocol_set(splits.test.images, splits.test.indices, config.test_angles, config.eval_seed)


RECIPE_OF_DATASET = {"mnist": "mnist-published", "olivetti": "faces-published"}


def saved_model_protocol(info: dict[str, Any]) -> TrainConfig:
    """The data protocol a saved model (its model.json) was evaluated on: its dataset's
    published recipe with the model's own class exclusion, test angles and seed."""
    from upright.recipes import make_config

    data = info.get("data", {})
    dataset = data.get("dataset", "mnist")
    if dataset not in RECIPE_OF_DATASET:
        raise DatasetError(f"the model was trained on {dataset!r}: no published protocol to rebuild")
    overrides = {k: data.get(k) for k in ("excluded_groups", "test_angles", "eval_seed")}
    return make_config(RECIPE_OF_DATASET[dataset], overrides)


@dataclass
class Evaluation:
    """What evaluating a model on its data protocol found; nothing is written."""

    metrics: dict[str, Any]
    predictions: dict[str, np.ndarray]
    samples: dict[str, np.ndarray]


def validation_set(config: TrainConfig, splits: Splits) -> RotatedSet:
    """The validation items training watched (and calibration fits its temperature to)."""
    return protocol_set(splits.val.images, splits.val.indices, config.val_angles, config.eval_seed + 1)


def evaluate(model: AngleModel, splits: Splits, config: TrainConfig, progress: bool = True,
             calibration: dict | None = None) -> Evaluation:
    """The model on the test protocol, a sample of training images, the fixed angles, the
    blank-content check and the robustness suite; plus the before/after grid's samples.
    With a ``calibration`` (a distribution head's temperature) also how well its
    confidence is calibrated, on the test protocol and every robustness variant."""
    started = time.perf_counter()
    model = for_inference(model)
    bs, fill = config.eval_batch_size, config.fill
    temperature = calibration["temperature"] if calibration else None

    def run_set(name, rotated):
        return predict_set(model, rotated, bs, fill, desc=f"evaluate {name}" if progress else None)

    test_set = protocol_test_set(config, splits)
    if temperature is None:
        test_pred, test_belief = run_set("test", test_set), None
    else:
        test_belief = belief_set(model, test_set, bs, fill, temperature)
        test_pred = test_belief.angle.astype(np.float32)
    # The first images drawn, read or not: the same ones whichever way a folder is read.
    train_part = in_memory(splits.train.first_drawn(min(config.train_eval_images, splits.train.drawn)),
                           config.num_workers)
    train_set = protocol_set(train_part.images, train_part.indices, config.test_angles,
                             config.eval_seed + 2)
    train_pred = run_set("train", train_set)
    n_blank = min(BLANK_CONTENT_IMAGES, len(splits.test))
    blank = blank_content_set(splits.test.images[:n_blank], splits.test.indices[:n_blank],
                              config.test_angles, config.eval_seed)
    blank_pred = predict_set(model, blank, bs, fill)
    samples = _samples(model, splits, config)
    fixed = fixed_angle_set(splits.test.images)
    fixed_pred = run_set("fixed angles", fixed)
    items = robustness.suite_items(splits.test.images, splits.test.indices, config.suite_angles,
                                   config.eval_seed)
    suite = robustness_metrics(model, items, config.eval_seed, bs, fill, progress, temperature)
    metrics = {
        "test": summarise(test_pred, test_set.angles),
        "train": summarise(train_pred, train_set.angles),
        "fixed_angles": {**summarise(fixed_pred, fixed.angles),
                         "per_angle": per_angle(fixed_pred, fixed.angles)},
        "per_group": _per_group(test_pred, test_set, splits),
        "blank_content": border_cue(blank_pred, blank.angles),
        "robustness": suite,
        "evaluation_seconds": round(time.perf_counter() - started, 2),
    }
    if test_belief is not None:
        correct = np.abs(circular_difference(test_belief.angle, test_set.angles)) <= 5.0
        metrics["calibration"] = {**calibration, "test": calibration_report(test_belief.confidence, correct),
                                  "selective": selective_accuracy(test_belief.confidence, correct),
                                  "per_group": _confidence_per_group(test_belief, correct, test_set, splits)}
    predictions = {
        **({"test_confidence": test_belief.confidence, "test_second_angle": test_belief.second_angle,
            "test_second_mass": test_belief.second_mass} if test_belief is not None else {}),
        "test_source": splits.test.indices[test_set.source],
        "test_group": splits.test.groups[test_set.source],
        "test_true": test_set.angles, "test_pred": test_pred,
        "fixed_source": splits.test.indices[fixed.source], "fixed_true": fixed.angles,
        "fixed_pred": fixed_pred,
    }
    return Evaluation(metrics, predictions, samples)


def card_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures model.json carries (and a model card shows)."""
    suite = metrics.get("robustness", {})
    card = {"test": metrics["test"], "train": metrics["train"],
            "robustness": {k: suite[k] for k in ("suite", "held_out") if k in suite}}
    if "calibration" in metrics:
        card["ece"] = metrics["calibration"]["test"]["ece"]
    return card


def _write_evaluation(run: RunFolder, result: Evaluation) -> None:
    run.write_samples(result.samples)
    run.write_predictions(result.predictions)
    run.write_metrics(result.metrics)


def evaluate_run(run_dir: str | Path, progress: bool = True, report: bool = True) -> dict[str, Any]:
    """Re-evaluate a run folder's saved model on its data protocol: rewrites metrics.json,
    predictions.npz, samples.npz and the metrics in model.json (and the report)."""
    run = RunFolder(run_dir)
    config = run.config()
    model, info = checkpoint.load(run.path)
    _check_same_protocol(run, config, info)
    _, splits = prepare_data(config)
    _check_same_split(config, splits, info)
    calibration = calibrate(model, validation_set(config, splits), config.eval_batch_size, config.fill)
    result = evaluate(model, splits, config, progress, calibration)
    result.metrics["training"] = info.get("training", {})
    _write_evaluation(run, result)
    checkpoint.write_config(run.path, model.spec, {**{k: v for k, v in info.items()
                                                      if k not in ("format", "model")},
                                                   "calibration": calibration,
                                                   "metrics": card_metrics(result.metrics)})
    if report:
        from upright.report import write_report  # matplotlib: only when drawing

        write_report(run.path)
    return result.metrics


# What the run's test protocol was made of, as model.json records it: evaluate recomputes
# that protocol, and a config.json edited since would score another one under the run's name.
PROTOCOL_SETTINGS = ("excluded_groups", "test_angles", "eval_seed")


def _check_same_protocol(run: RunFolder, config: TrainConfig, info: dict[str, Any]) -> None:
    """config.json still asks for the data protocol model.json says the run was made with.
    A folder may have moved (its path is not compared: the split checks see its files)."""
    data = info.get("data") if isinstance(info.get("data"), dict) else {}
    then = str(data.get("dataset", config.dataset))
    if then.split(":", 1)[0] != config.dataset.split(":", 1)[0]:  # mnist, olivetti or folder
        raise DatasetError(f"{run.file(RunFolder.CONFIG)}: dataset is {config.dataset!r}, but the "
                           f"run was made on {then!r} ({RunFolder.MODEL_INFO}); put "
                           "that back, or train a new run on the other data")
    for key in PROTOCOL_SETTINGS:
        now = getattr(config, key)
        now = list(now) if isinstance(now, tuple) else now
        if key in data and data[key] != now:
            then = "the dataset's default" if data[key] is None else repr(data[key])
            raise DatasetError(f"{run.file(RunFolder.CONFIG)}: {key} is {now!r}, but the run was "
                               f"tested with {then} ({RunFolder.MODEL_INFO}); evaluate "
                               "recomputes the run's own protocol: put that back, or train a new run")


def _check_same_split(config: TrainConfig, splits: Splits, info: dict[str, Any]) -> None:
    """The data still splits into the images the run was trained and tested on: a folder
    that gained or lost files splits otherwise, and its test set would then hold images
    the model trained on."""
    data = info.get("data") if isinstance(info.get("data"), dict) else {}
    then = data.get("images")
    now = drawn_counts(splits)
    if isinstance(then, dict) and then and then != now:
        shown = "/".join(str(then.get(k)) for k in now)
        if then == {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}:
            raise DatasetError(f"{config.dataset}: the run counted only the images it could read "
                               f"({shown}, train/validation/test, as upright did before 2026-12-07), and "
                               "the data now holds files that cannot be read: which split they "
                               "stood in cannot be checked; train a new run on it instead")
        raise DatasetError(f"{config.dataset}: splits into {now['train']}/{now['val']}/{now['test']} "
                           f"images (train/validation/test), the run was made with {shown}: the "
                           "data changed since, and its test set would hold other images (some "
                           "the model trained on); train a new run on it instead")
    # (a run from before the fingerprint has none: its counts are all there is to check)
    if data.get("test_sha256") and data["test_sha256"] != test_fingerprint(splits):
        raise DatasetError(f"{config.dataset}: the test images are not the ones the run was tested "
                           "on (the same numbers of images, other pixels: files swapped, edited or "
                           "renamed since); train a new run on it instead")


def _samples(model: AngleModel, splits: Splits, config: TrainConfig) -> dict[str, np.ndarray]:
    """A seeded shuffle's first test images, rotated, with predictions: for the before/after grid."""
    order = np.random.default_rng(config.eval_seed).permutation(len(splits.test))[:config.grid_images]
    angles = protocol_angles(splits.test.indices[order], 1, config.eval_seed + 3)[:, 0]
    rotated = RotatedSet(splits.test.images, order, angles)
    pred = predict_set(model, rotated, config.eval_batch_size, config.fill)
    images = rotate_batch(to_float_images(torch.from_numpy(splits.test.images[order])),
                          torch.from_numpy(angles.astype(np.float32)), config.fill)
    return {"images": to_uint8_images(images), "true": angles, "pred": pred,
            "source": splits.test.indices[order]}


def _confidence_per_group(belief, correct: np.ndarray, rotated, splits: Splits) -> dict[str, dict]:
    """Per digit (or person): mean confidence, and coverage and within-5 among the accepted
    at the default threshold of ``correct --min-confidence``."""
    groups = splits.test.groups[rotated.source]
    table = {}
    for g in np.unique(groups):
        chosen = groups == g
        accepted = chosen & (belief.confidence >= DEFAULT_MIN_CONFIDENCE)
        table[str(int(g))] = {
            "mean_confidence": float(belief.confidence[chosen].mean()),
            "coverage": float(accepted.sum() / chosen.sum()),
            "within_5_accepted": float(correct[accepted].mean()) if accepted.any() else None,
            "runner_up_share": float((belief.second_mass[chosen] > 0).mean()),
        }
    return table


def _per_group(pred: np.ndarray, rotated, splits: Splits) -> dict[str, dict[str, float]]:
    groups = splits.test.groups[rotated.source]
    return {str(int(g)): summarise(pred[groups == g], rotated.angles[groups == g])
            for g in np.unique(groups)}


def calibrate_model_folder(path: str | Path, progress: bool = True) -> dict[str, Any]:
    """Fit a saved model's temperature on its protocol's validation split and record it,
    with the test protocol's calibration (ECE, reliability, selective accuracy), in its
    model.json: for models trained before calibration existed (the shipped ones included).
    A run folder's own config gives the protocol; a bare model folder its dataset's."""
    folder = checkpoint.model_folder(path)
    model, info = checkpoint.load(folder)
    run = RunFolder(folder)
    if run.file(RunFolder.CONFIG).is_file():
        config = run.config()
    else:
        config = saved_model_protocol(info)
        config.val_angles = 4  # the published 20 would hold 140 k distributions in memory
    _, splits = prepare_data(config)
    calibration = calibrate(model, validation_set(config, splits), config.eval_batch_size, config.fill)
    if calibration is None:
        raise UserError(f"{folder}: the {model.spec.head} head has no distribution over angles; "
                        "there is no confidence to calibrate")
    test_set = protocol_test_set(config, splits)
    belief = belief_set(model, test_set, config.eval_batch_size, config.fill, calibration["temperature"])
    correct = np.abs(circular_difference(belief.angle, test_set.angles)) <= 5.0
    report = calibration_report(belief.confidence, correct)
    accepted = belief.confidence >= DEFAULT_MIN_CONFIDENCE
    metrics = dict(info.get("metrics", {}))
    metrics["ece"] = report["ece"]
    metrics["selective"] = {"min_confidence": DEFAULT_MIN_CONFIDENCE, "coverage": float(accepted.mean()),
                            "within_5_accepted": float(correct[accepted].mean()) if accepted.any() else None}
    kept = {k: v for k, v in info.items() if k not in ("format", "model")}
    checkpoint.write_config(folder, model.spec, {**kept, "calibration": calibration, "metrics": metrics})
    return {"calibration": calibration, "test": report, "selective": metrics["selective"]}
