"""``upright compare``: the article's output-activation comparison, plus circular heads.

Same dataset, backbone, data order (seed) and training budget for every head; N runs
each. Writes compare.json, compare.md (with the wrap-around study) and compare.png.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from upright import checkpoint, fileio
from upright.angles import circular_error
from upright.config import TrainConfig, setting_fields
from upright.data.rotated import FIXED_ANGLES, fixed_angle_set
from upright.errors import UserError
from upright.evaluation import per_angle, predict_set, summarise
from upright.experiments import prepare_data, train_run, whole_dataset_path
from upright.recipes import make_config
from upright.runs import RunFolder

# The fixed angles plus the neighbours of the seam at +-180.
SEAM_ANGLES = tuple(sorted(set(FIXED_ANGLES) | {-180, -179, -178, 178, 179, -170, 170}))
NEAR_SEAM = 170.0  # |true angle| above this counts as "near +-180"
SEAM_IMAGES = 1000  # test images shown at every seam angle


def run_metrics(run_dir: Path, seam_images: np.ndarray, batch_size: int, fill: float) -> dict:
    """One run's numbers for the comparison table."""
    run = RunFolder(run_dir)
    metrics, predictions = run.metrics(), run.predictions()
    true, pred = predictions["test_true"], predictions["test_pred"]
    near = np.abs(true) > NEAR_SEAM
    err = circular_error(pred.astype(np.float64), true.astype(np.float64))
    model, _ = checkpoint.load(run_dir)
    seam = fixed_angle_set(seam_images[:SEAM_IMAGES], SEAM_ANGLES)
    seam_pred = predict_set(model, seam, batch_size, fill)
    return {
        "run": run_dir.name,
        "epochs": metrics["training"].get("epochs"),
        "train_within_5": metrics["train"]["within_5"],
        "test_within_5": metrics["test"]["within_5"],
        "test_circular_mae": metrics["test"]["circular_mae"],
        "test_linear_mae": metrics["test"]["linear_mae"],
        "test_within_5_near_seam": float((err[near] <= 5).mean()) if near.any() else float("nan"),
        "test_mae_near_seam": float(err[near].mean()) if near.any() else float("nan"),
        "test_mae_elsewhere": float(err[~near].mean()),
        "seam_per_angle": per_angle(seam_pred, seam.angles),
        "seam_summary": summarise(seam_pred, seam.angles),
    }


# Settings that change neither the trained model nor its test figures: memory use, and how
# many test images the report's grid shows.
NOT_THE_RUN = {"cache", "grid_images"}


def setting_differences(saved: Any, config: TrainConfig) -> list[str]:
    """The settings that make a run (not how it ran, nor what the data decides) in which a
    saved config.json and ``config`` differ, as "key: saved there, wanted now"."""
    if not isinstance(saved, dict):
        return ["config.json: not a JSON object"]
    wanted, defaults = config.to_dict(), TrainConfig().to_dict()
    differences = []
    for key, f in setting_fields().items():
        if f.metadata.get("section") == "runtime" or f.metadata.get("derived") or key in NOT_THE_RUN:
            continue
        group, _, name = key.rpartition(".")
        # A setting an older config.json lacks had its default then.
        default = defaults[group][name] if group else defaults[name]
        there = (saved.get(group) or {}).get(name, default) if group else saved.get(name, default)
        now = wanted[group][name] if group else wanted[name]
        if there != now:
            differences.append(f"{key}: {there!r} there, {now!r} now")
    return differences


def _mean_sd(values: list[float]) -> dict[str, float]:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}


def compare(heads: list[str], runs: int, out_dir: str | Path, recipe: str = "mnist-published",
            overrides: dict[str, Any] | None = None, progress: bool = True,
            report: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Train (or keep, where an earlier comparison in ``out_dir`` trained it with the same
    settings) ``runs`` runs per head and tabulate them. A run there trained with other
    settings is retrained with ``overwrite``, else an error before any work."""
    if runs < 1:
        raise UserError(f"runs must be 1 or more, got {runs}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")
    overrides = dict(overrides or {})
    plan = []
    for head in heads:
        for seed in range(runs):
            model = {**overrides.get("model", {}), "head": head}
            config = make_config(recipe, {**overrides, "model": model, "seed": seed})
            config.dataset = whole_dataset_path(config.dataset)  # as the runs record it
            run_dir = out_dir / f"{head}-seed{seed}"
            earlier = RunFolder(run_dir)
            keep = earlier.file(RunFolder.METRICS).is_file()  # finished earlier: resume
            if keep:
                differences = setting_differences(earlier.config_dict(), config)
                if differences and not overwrite:
                    raise UserError(f"{run_dir}: trained with other settings ({differences[0]}); "
                                    "pass --overwrite to retrain it, or -o another folder")
                keep = not differences
            plan.append((head, seed, config, run_dir, keep))
    base = make_config(recipe, overrides)
    _, splits = prepare_data(base)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_head: dict[str, list[dict]] = {head: [] for head in heads}
    for head, seed, config, run_dir, keep in plan:
        if keep:
            if progress:
                print(f"[compare] {head} run {seed + 1}/{runs}: kept {run_dir}", flush=True)
        else:
            if progress:
                print(f"[compare] {head} run {seed + 1}/{runs} -> {run_dir}", flush=True)
            train_run(config, run_dir, progress=progress, report=report, overwrite=overwrite)
        per_head[head].append(run_metrics(run_dir, splits.test.images, config.eval_batch_size,
                                          config.fill))
    table = _table(per_head)
    result = {"recipe": recipe, "overrides": overrides, "runs_per_head": runs,
              "near_seam_threshold": NEAR_SEAM, "heads": table, "runs": per_head}
    fileio.write_json(out_dir / "compare.json", result)
    fileio.write_text(out_dir / "compare.md", to_markdown(result))
    _bar_chart(table, out_dir / "compare.png")
    return result


SUMMARY_KEYS = ("epochs", "train_within_5", "test_within_5", "test_circular_mae", "test_linear_mae",
                "test_within_5_near_seam", "test_mae_near_seam", "test_mae_elsewhere")


def _table(per_head: dict[str, list[dict]]) -> dict[str, dict]:
    table = {}
    for head, runs in per_head.items():
        row = {key: _mean_sd([r[key] for r in runs]) for key in SUMMARY_KEYS}
        angles = runs[0]["seam_per_angle"].keys()
        row["seam_median_error"] = {
            a: float(np.mean([r["seam_per_angle"][a]["median_error"] for r in runs])) for a in angles}
        row["seam_median_prediction"] = {
            a: float(np.mean([r["seam_per_angle"][a]["median_prediction_linear"] for r in runs]))
            for a in angles}
        table[head] = row
    return table


def to_markdown(result: dict[str, Any]) -> str:
    table = result["heads"]
    pct = lambda s: f"{100 * s['mean']:.1f} ± {100 * s['sd']:.1f}"  # noqa: E731
    num = lambda s: f"{s['mean']:.2f} ± {s['sd']:.2f}"  # noqa: E731
    lines = [
        f"# Head comparison ({result['recipe']}, {result['runs_per_head']} runs per head)",
        "",
        f"Overrides: `{json.dumps(result['overrides'])}`. Mean ± sd over runs; shares in %.",
        "",
        "| head | epochs | train ±5° | test ±5° | test circular MAE | test linear MAE "
        f"| test ±5° at abs(angle) > {result['near_seam_threshold']:.0f} |",
        "|---|---|---|---|---|---|---|",
    ]
    for head, row in table.items():
        lines.append(f"| {head} | {num(row['epochs'])} | {pct(row['train_within_5'])} | "
                     f"{pct(row['test_within_5'])} | {num(row['test_circular_mae'])} | "
                     f"{num(row['test_linear_mae'])} | {pct(row['test_within_5_near_seam'])} |")
    angles = list(next(iter(table.values()))["seam_median_error"].keys())
    lines += [
        "",
        "## Wrap-around study",
        "",
        "Circular MAE near ±180 (true angle beyond ±170) against elsewhere, on the test set:",
        "",
        "| head | MAE near ±180 | MAE elsewhere |",
        "|---|---|---|",
    ]
    for head, row in table.items():
        lines.append(f"| {head} | {num(row['test_mae_near_seam'])} | {num(row['test_mae_elsewhere'])} |")
    lines += [
        "",
        "Median circular error per true angle on the fixed-angle set extended by the seam's "
        "neighbours (mean over runs):",
        "",
        "| head | " + " | ".join(angles) + " |",
        "|---|" + "---|" * len(angles),
    ]
    for head, row in table.items():
        lines.append(f"| {head} | " + " | ".join(f"{row['seam_median_error'][a]:.1f}"
                                                 for a in angles) + " |")
    lines += ["", "Median predicted angle per true angle (plain median, as published):", "",
              "| head | " + " | ".join(angles) + " |", "|---|" + "---|" * len(angles)]
    for head, row in table.items():
        lines.append(f"| {head} | " + " | ".join(f"{row['seam_median_prediction'][a]:.1f}"
                                                 for a in angles) + " |")
    return "\n".join(lines) + "\n"


def _bar_chart(table: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = list(table)
    x = np.arange(len(heads))
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(heads)), 4.5), dpi=100)
    for offset, key, label in ((-0.2, "test_within_5", "all test angles"),
                               (0.2, "test_within_5_near_seam", "|angle| > 170")):
        means = [100 * table[h][key]["mean"] for h in heads]
        sds = [100 * table[h][key]["sd"] for h in heads]
        ax.bar(x + offset, means, 0.4, yerr=sds, capsize=3, label=label)
    ax.set_xticks(x, heads)
    ax.set_ylabel("test predictions within ±5° (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Output heads compared")
    ax.legend()
    fig.tight_layout()
    fileio.write_with(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
