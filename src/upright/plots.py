"""Figures of a run, drawn only from its folder (metrics.csv, metrics.json, predictions.npz,
samples.npz); never from a live model."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from upright import fileio  # noqa: E402
from upright.angles import circular_difference  # noqa: E402
from upright.geometry import rotate_image  # noqa: E402
from upright.runs import RunFolder, RunFolderError  # noqa: E402

DPI = 100
DRAWING = "cannot draw the plots"


def _save(fig, path: Path) -> Path:
    fileio.write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    plt.close(fig)
    return path


def read_learning_log(run_dir: Path) -> dict[str, dict[int, float]]:
    """Per-epoch values of each logged column from Lightning's metrics.csv."""
    path = RunFolder(run_dir).need(RunFolder.LOG, DRAWING)
    curves: dict[str, dict[int, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key not in ("epoch", "step") and value not in ("", None):
                    curves.setdefault(key, {})[int(row["epoch"]) + 1] = float(value)
    if not curves:
        raise RunFolderError(f"{path}: holds no logged epoch")
    return curves


def learning_curves(run_dir: Path, out: Path) -> Path:
    curves = read_learning_log(run_dir)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, kind, label, title in ((axes[0], "loss", "loss (head's training loss)", "loss"),
                                   (axes[1], "mae", "circular MAE (degrees)", "circular MAE")):
        for stage, style in (("train", "o-"), ("val", "s--")):
            values = curves.get(f"{stage}_{kind}", {})
            if values:
                epochs = sorted(values)
                ax.plot(epochs, [values[e] for e in epochs], style, label=stage)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"Learning curve: {title}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _save(fig, out)


def _predictions(run_dir: Path) -> dict[str, np.ndarray]:
    return RunFolder(run_dir).predictions(DRAWING)


def fixed_angle_plots(run_dir: Path, out: Path) -> Path:
    """Predicted vs true on the fixed-angle set: scatter, box plot, per-angle median table."""
    pred = _predictions(run_dir)
    true, predicted = pred["fixed_true"].astype(float), pred["fixed_pred"].astype(float)
    angles = np.unique(true)
    # Unwrap each prediction around its truth, so a miss across +-180 shows as a miss.
    unwrapped = true + circular_difference(predicted, true)
    fig = plt.figure(figsize=(15, 5.2))
    grid = fig.add_gridspec(1, 3, width_ratios=[1, 1.3, 0.55])
    ax = fig.add_subplot(grid[0])
    rng = np.random.default_rng(0)
    ax.scatter(true + rng.uniform(-3, 3, len(true)), predicted, s=2, alpha=0.15, label="prediction")
    ax.scatter(angles, angles, marker="x", color="red", s=60, label="ideal", zorder=3)
    ax.set_xlabel("true angle (degrees)")
    ax.set_ylabel("predicted angle (degrees)")
    ax.set_title("Predicted vs true, fixed angles")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(grid[1])
    ax.boxplot([unwrapped[true == a] for a in angles], positions=range(len(angles)),
               showfliers=False, widths=0.6)
    ax.scatter(range(len(angles)), angles, marker="x", color="red", zorder=3, label="ideal")
    ax.set_xticks(range(len(angles)), [f"{a:g}" for a in angles])
    ax.set_xlabel("true angle (degrees)")
    ax.set_ylabel("predicted angle, unwrapped (degrees)")
    ax.set_title("Predictions per angle (no outliers)")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(grid[2])
    ax.axis("off")
    rows = [[f"{a:g}", f"{np.median(unwrapped[true == a]):.1f}",
             f"{np.median(np.abs(unwrapped[true == a] - a)):.2f}"] for a in angles]
    table = ax.table(cellText=rows, colLabels=["true", "median pred", "median err"],
                     loc="center", cellLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1, 1.3)
    ax.set_title("Per-angle medians")
    fig.tight_layout()
    return _save(fig, out)


def error_plots(run_dir: Path, out: Path) -> Path:
    """Error histogram (log count) and signed error against the true angle."""
    pred = _predictions(run_dir)
    true, predicted = pred["test_true"].astype(float), pred["test_pred"].astype(float)
    err = circular_difference(predicted, true)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    axes[0].hist(err, bins=np.arange(-180, 181, 2), log=True, color="tab:blue")
    axes[0].set_xlabel("signed circular error (degrees)")
    axes[0].set_ylabel("count (log)")
    axes[0].set_title("Error histogram (errors near ±180: upside-down mistakes)")
    axes[0].grid(alpha=0.3)
    axes[1].scatter(true, err, s=2, alpha=0.1)
    axes[1].set_xlabel("true angle (degrees)")
    axes[1].set_ylabel("signed circular error (degrees)")
    axes[1].set_title("Error against true angle (watch the ±180 seam)")
    axes[1].set_ylim(-185, 185)
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out)


def per_group_plot(run_dir: Path, out: Path) -> Path:
    run = RunFolder(run_dir)
    groups = run.metrics(DRAWING).get("per_group", {})
    if not groups:
        raise RunFolderError(f"{run.file(RunFolder.METRICS)}: has no per-group metrics")
    names = sorted(groups, key=lambda g: int(g) if g.lstrip("-").isdigit() else g)
    kind = run.config_dict().get("dataset", "") if run.file(RunFolder.CONFIG).is_file() else ""
    label = {"mnist": "digit", "olivetti": "person"}.get(kind, "group")
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(names) + 3), 4))
    ax.bar(range(len(names)), [groups[g]["circular_mae"] for g in names], color="tab:orange")
    ax.set_xticks(range(len(names)), names)
    ax.set_xlabel(label)
    ax.set_ylabel("test circular MAE (degrees)")
    ax.set_title(f"Error per {label}")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _save(fig, out)


def robustness_plot(run_dir: Path, out: Path) -> Path:
    """Circular MAE and share within 5 degrees on the protocol and on every variant of the
    robustness suite (and the held-out variations), one bar each."""
    run = RunFolder(run_dir)
    suite = run.metrics(DRAWING).get("robustness")
    if not suite:
        raise RunFolderError(f"{run.file(RunFolder.METRICS)}: has no robustness suite (re-run evaluate)")
    from upright.robustness import SUITE

    rows = [("protocol", suite["protocol"], "tab:gray")]
    rows += [(name, v, "tab:blue" if name in SUITE else "tab:purple")
             for name, v in suite["variants"].items()]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.38 * len(rows) + 1.6), sharey=True)
    ys = np.arange(len(rows))[::-1]
    for ax, key, label, fmt in ((axes[0], "circular_mae", "circular MAE (degrees, log)", "{:.2f}"),
                                (axes[1], "within_5", "share within ±5°", "{:.1%}")):
        values = [v[key] for _, v, _ in rows]
        ax.barh(ys, values, color=[c for _, _, c in rows])
        for y, value in zip(ys, values, strict=True):
            ax.text(value, y, " " + fmt.format(value), va="center", fontsize=8)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_xscale("log")
    maes = [max(v["circular_mae"], 1e-3) for _, v, _ in rows]
    # a decade at least, with room for the labels: nearly equal bars get sane ticks
    axes[0].set_xlim(min(min(maes) / 2, max(maes) / 10), max(maes) * 3)
    axes[1].set_xlim(0, 1.15)
    axes[0].set_yticks(ys, [name for name, _, _ in rows])
    mean = suite.get("suite", {}).get("mean_circular_mae")
    title = "Robustness suite (blue) and held-out variations (purple)"
    if mean is not None:
        title += f": suite mean {mean:.2f}°, worst {suite['suite']['worst']}"
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out)


def mosaic(images, columns: int) -> np.ndarray:
    """Same-size uint8 images laid out in rows of ``columns`` on white, 1-pixel gutters."""
    h, w = images[0].shape[:2]
    rows = -(-len(images) // columns)
    canvas = np.full((rows * (h + 2), columns * (w + 2)) + images[0].shape[2:], 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * (h + 2) + 1: r * (h + 2) + 1 + h, c * (w + 2) + 1: c * (w + 2) + 1 + w] = img
    return canvas


def before_after_grid(run_dir: Path, out: Path) -> Path:
    """Test images as given (rotated) and after correction by the predicted angle."""
    samples = RunFolder(run_dir).samples(DRAWING)
    images, pred = samples["images"], samples["pred"]
    corrected = np.stack([rotate_image(img, -float(a)) for img, a in zip(images, pred, strict=True)])
    side = int(np.ceil(np.sqrt(len(images))))

    fig, axes = plt.subplots(1, 2, figsize=(12, 6.3))
    for ax, batch, title in ((axes[0], images, "Test images as given"),
                             (axes[1], corrected, "After correction by the predicted angle")):
        ax.imshow(mosaic(batch, side), cmap="gray", vmin=0, vmax=255)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, out)


def labelled_before_after(before: list[np.ndarray], after: list[np.ndarray], predicted: np.ndarray,
                          true: np.ndarray, out: Path, columns: int = 8) -> Path:
    """Pairs of images as given and as corrected, each labelled with the predicted turn and
    the true one, so the picture reads without a manual."""
    h, w = before[0].shape[:2]
    gap = np.full((h, 2), 255, np.uint8)
    pairs = [np.concatenate([b, gap, a], 1) for b, a in zip(before, after, strict=True)]
    rows = -(-len(pairs) // columns)
    cell_h, cell_w = h + 12, 2 * w + 10  # room for the label under each pair
    canvas = np.full((rows * cell_h, columns * cell_w), 255, np.uint8)
    for i, pair in enumerate(pairs):
        r, c = divmod(i, columns)
        canvas[r * cell_h + 1: r * cell_h + 1 + h, c * cell_w + 4: c * cell_w + 4 + pair.shape[1]] = pair
    fig, ax = plt.subplots(figsize=(columns * 1.5, rows * 0.85 + 0.6))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    for i in range(len(pairs)):
        r, c = divmod(i, columns)
        ax.text(c * cell_w + cell_w / 2, r * cell_h + h + 6.5, f"{predicted[i]:+.0f}° (true {true[i]:+.0f}°)",
                ha="center", va="center", fontsize=6)
    ax.set_title("each pair: as given (left), corrected by upright (right); "
                 "predicted turn (true turn)", fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    return _save(fig, out)


def calibration_plot(run_dir: Path, out: Path) -> Path:
    """Reliability diagram (confidence against the share within 5 degrees, per confidence
    bin) and the selective-accuracy curve (coverage against within 5 among the accepted)."""
    calibration = RunFolder(run_dir).metrics(DRAWING).get("calibration")
    if not calibration:
        raise RunFolderError(f"{RunFolder(run_dir).file(RunFolder.METRICS)}: no calibration "
                             "(the head has no distribution)")
    test = calibration["test"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    ax = axes[0]
    bins = test["bins"]
    ax.plot([0, 1], [0, 1], ":", color="gray", label="perfectly calibrated")
    ax.bar([(b["low"] + b["high"]) / 2 for b in bins], [b["within_5"] for b in bins],
           width=[b["high"] - b["low"] for b in bins], alpha=0.6, edgecolor="k", label="share within 5°")
    ax.plot([b["confidence"] for b in bins], [b["within_5"] for b in bins], "o-", color="tab:red",
            label="mean confidence per bin")
    ax.set_xlabel("confidence")
    ax.set_ylabel("share within 5° of the truth")
    ax.set_title(f"Reliability (ECE {test['ece']:.3f}, T = {calibration['temperature']:.2f})")
    ax.legend(fontsize=8)
    ax = axes[1]
    rows = [r for r in calibration["selective"] if r["within_5_accepted"] is not None]
    ax.plot([r["coverage"] for r in rows], [r["within_5_accepted"] for r in rows], "o-")
    for r in rows[::4]:
        ax.annotate(f"{r['threshold']:.2f}", (r["coverage"], r["within_5_accepted"]), fontsize=7)
    ax.set_xlabel("coverage (share of images turned)")
    ax.set_ylabel("within 5° among the turned")
    ax.set_title("Selective accuracy (labels: --min-confidence)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out)


PLOTS: dict[str, Callable[[Path, Path], Path]] = {
    "learning_curves": learning_curves,
    "fixed_angles": fixed_angle_plots,
    "errors": error_plots,
    "per_group": per_group_plot,
    "robustness": robustness_plot,
    "calibration": calibration_plot,
    "before_after": before_after_grid,
}
# Plots a run folder from before their metrics existed cannot have; skipped, not an error.
OPTIONAL_PLOTS = ("robustness", "calibration")


def draw_all(run_dir: str | Path) -> dict[str, Path]:
    """Every plot of a run into ``run_dir/plots``; a missing input raises RunFolderError."""
    run = RunFolder(run_dir)
    if not run.path.is_dir():
        raise RunFolderError(f"{run.path}: no such run folder")
    drawn = {}
    for name, draw in PLOTS.items():
        try:
            drawn[name] = draw(run.path, run.plot(name))
        except RunFolderError:
            if name not in OPTIONAL_PLOTS:
                raise
    return drawn
