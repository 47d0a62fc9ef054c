"""``upright report RUN``: one self-contained report.html (plots embedded) and a report.md."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from upright import fileio
from upright.plots import draw_all
from upright.runs import RunFolder, RunFolderError

TITLES = {
    "learning_curves": "Learning curves",
    "fixed_angles": "Predicted vs true angle on the fixed-angle set",
    "errors": "Errors on the test set",
    "per_group": "Error per class / person",
    "robustness": "Robustness suite: the test images turned by other means",
    "calibration": "Confidence: reliability and selective accuracy",
    "before_after": "Before and after correction",
}
SUMMARY_ROWS = (
    ("circular_mae", "circular MAE (°)", "{:.2f}"),
    ("linear_mae", "linear MAE, as published (°)", "{:.2f}"),
    ("median_error", "median error (°)", "{:.2f}"),
    ("p95_error", "95th percentile error (°)", "{:.2f}"),
    ("within_1", "within ±1°", "{:.1%}"),
    ("within_2", "within ±2°", "{:.1%}"),
    ("within_5", "within ±5°", "{:.1%}"),
    ("within_10", "within ±10°", "{:.1%}"),
    ("count", "images", "{:,}"),
)



def _summary_table(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    sets = [("test", "test"), ("train", "train (sample)"), ("fixed_angles", "fixed angles")]
    present = [(k, label) for k, label in sets if k in metrics]
    header = ["metric"] + [label for _, label in present]
    rows = [[name] + [fmt.format(metrics[k][key]) for k, _ in present] for key, name, fmt in SUMMARY_ROWS]
    return header, rows


def _per_angle_table(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    table = metrics["fixed_angles"]["per_angle"]
    rows = [[a, f"{v['median_prediction']:.2f}", f"{v['median_prediction_linear']:.2f}",
             f"{v['median_error']:.2f}"] for a, v in sorted(table.items(), key=lambda kv: float(kv[0]))]
    return ["true angle", "median prediction (unwrapped)", "median prediction (plain)",
            "median error"], rows


def _group_table(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per class or person: errors, and where the head has a distribution, the confidence,
    the share turned at the default --min-confidence, accuracy among those and how often a
    runner-up holds mass (a 0, 1 or 8: 180 degrees away)."""
    groups = metrics.get("per_group", {})
    sure = (metrics.get("calibration") or {}).get("per_group", {})

    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    rows = []
    for g, v in sorted(groups.items(), key=lambda kv: int(kv[0])):
        row = [g, f"{v['circular_mae']:.2f}", f"{v['within_5']:.1%}", f"{v['count']:,}"]
        if sure:
            c = sure.get(g, {})
            row += [f"{c.get('mean_confidence', float('nan')):.2f}", share(c.get("coverage")),
                    share(c.get("within_5_accepted")), share(c.get("runner_up_share"))]
        rows.append(row)
    header = ["group", "circular MAE (°)", "within ±5°", "images"]
    if sure:
        header += ["mean confidence", "turned", "within ±5° of turned", "with a runner-up"]
    return header, rows


def _confidence_table(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """ECE on the test protocol, then coverage and accuracy among the accepted per threshold."""
    calibration = metrics.get("calibration")
    if not calibration:
        return None
    test = calibration["test"]
    rows = [["test protocol", f"ECE {test['ece']:.3f}", f"mean {test['mean_confidence']:.3f}",
             f"{test['within_5']:.1%} within 5°"]]
    for r in calibration["selective"][::2]:
        within = "-" if r["within_5_accepted"] is None else f"{r['within_5_accepted']:.1%}"
        rows.append([f"--min-confidence {r['threshold']:.2f}", f"{r['coverage']:.1%} turned",
                     f"{within} of them within 5°", ""])
    return ["", "calibration / coverage", "", ""], rows


def _robustness_table(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """Per variant of the robustness suite: what it does, circular MAE, within 5."""
    suite = metrics.get("robustness")
    if not suite:
        return None
    from upright.robustness import SUITE, VARIANTS

    rows = [["protocol", "the published protocol's own rotation (same items)", "",
             f"{suite['protocol']['circular_mae']:.2f}", f"{suite['protocol']['within_5']:.1%}"]]
    for name, v in suite["variants"].items():
        kind = "suite" if name in SUITE else "held out"
        description = VARIANTS[name].description if name in VARIANTS else ""
        rows.append([name, description, kind, f"{v['circular_mae']:.2f}", f"{v['within_5']:.1%}"])
    for key, label in (("suite", "suite"), ("held_out", "held out")):
        if key in suite:
            s = suite[key]
            rows.append([f"{label}: mean / worst", f"worst: {s['worst']}", "",
                         f"{s['mean_circular_mae']:.2f} / {s['worst_circular_mae']:.2f}",
                         f"min {s['min_within_5']:.1%}"])
    return ["variant", "how the test image was made", "", "circular MAE (°)", "within ±5°"], rows


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd}pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:85%}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{background:#f3f7ff;border-radius:8px;padding:.8em 1.2em}
.card b{display:block;font-size:1.6em}"""


def _check_report_inputs(run: RunFolder, metrics: Any, config: Any) -> None:
    """metrics.json and config.json hold what the report reads, or one RunFolderError
    naming the file (a hand-edited or damaged file must not end in a traceback)."""
    metrics_path, config_path = run.file(RunFolder.METRICS), run.file(RunFolder.CONFIG)
    test = metrics.get("test") if isinstance(metrics, dict) else None
    if not isinstance(test, dict):
        raise RunFolderError(f"{metrics_path}: no \"test\" results in it; run upright evaluate {run.path}")
    for key in ("circular_mae", "linear_mae", "within_5", "count"):
        if isinstance(test.get(key), bool) or not isinstance(test.get(key), (int, float)):
            raise RunFolderError(f"{metrics_path}: test.{key} is {test.get(key)!r}, not a number; "
                                 f"run upright evaluate {run.path}")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise RunFolderError(f"{config_path}: not a run's config (no \"model\" object)")


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Draw the plots and write report.html and report.md into the run folder."""
    run = RunFolder(run_dir)
    run_dir = run.path
    metrics = run.metrics("cannot write the report")
    config = run.config_dict()
    model_info = run.model_info()
    _check_report_inputs(run, metrics, config)  # before a plot is redrawn: all or nothing
    name = run_dir.resolve().name
    test = metrics["test"]
    tables = [("Summary", _summary_table(metrics))]
    robustness = _robustness_table(metrics)
    if robustness:
        tables.append(("Robustness suite", robustness))
    confidence = _confidence_table(metrics)
    if confidence:
        tables.append(("Confidence (calibrated chance of being within 5°)", confidence))
    tables += [("Per-angle medians (fixed-angle set)", _per_angle_table(metrics)),
               ("Per class / person (test set)", _group_table(metrics))]
    made = model_info.get("made_by", {})
    how = (f"Data: {config.get('dataset')}, backbone {config['model']['backbone']}, head "
           f"{config['model']['head']}, seed {config.get('seed')}. Trained "
           f"{metrics.get('training', {}).get('epochs')} epochs in "
           f"{metrics.get('training', {}).get('train_seconds')} s "
           f"({metrics.get('training', {}).get('stopped_by')}).")
    command = made.get("command", "")
    blank = metrics.get("blank_content")

    parts = [f"<!doctype html><html><head><meta charset='utf-8'>"
             f"<title>upright report: {html.escape(name)}</title><style>{CSS}</style></head><body>",
             f"<h1>upright run <code>{html.escape(name)}</code></h1>",
             "<div class='cards'>",
             f"<div class='card'>test circular MAE<b>{test['circular_mae']:.2f}°</b></div>",
             f"<div class='card'>test within ±5°<b>{test['within_5']:.1%}</b></div>",
             f"<div class='card'>linear MAE (published metric)<b>{test['linear_mae']:.2f}°</b></div>",
             f"<div class='card'>test images<b>{test['count']:,}</b></div>",
             *([f"<div class='card'>robustness suite mean MAE"
                f"<b>{metrics['robustness']['suite']['mean_circular_mae']:.2f}°</b></div>",
                f"<div class='card'>worst variant ({html.escape(metrics['robustness']['suite']['worst'])})"
                f"<b>{metrics['robustness']['suite']['worst_circular_mae']:.2f}°</b></div>"]
               if metrics.get("robustness", {}).get("suite") else []),
             "</div>",
             f"<h2>How this run was made</h2><p>{html.escape(how)}</p>"]
    if command:
        parts.append(f"<pre>{html.escape(command)}</pre>")
    md = [f"# upright run `{name}`", "",
          f"Test circular MAE **{test['circular_mae']:.2f}°**, within ±5° **{test['within_5']:.1%}**, "
          f"linear MAE {test['linear_mae']:.2f}° ({test['count']:,} images).", "", "## How this run was made",
          "", how, ""]
    if command:
        md += ["```", command, "```", ""]
    for title, (header, rows) in tables:
        parts.append(f"<h2>{html.escape(title)}</h2>{_html_table(header, rows)}")
        md += [f"## {title}", "", _md_table(header, rows), ""]
    if blank:
        text = (f"Blank-content check (content replaced by its mean grey, only the rotation's corners "
                f"left): circular MAE {blank['circular_mae']:.1f}°, within ±5° {blank['within_5']:.1%}, "
                f"within ±5° modulo 90° {blank['within_5_modulo_90']:.1%} (chance: about 11%).")
        parts.append(f"<h2>Border cue</h2><p>{html.escape(text)}</p>")
        md += ["## Border cue", "", text, ""]
    plots = draw_all(run_dir)  # last: a report that cannot be written redraws nothing
    for key, path in plots.items():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(TITLES[key])}</h2>"
                     f"<img alt='{key}' src='data:image/png;base64,{data}'>")
        md += [f"## {TITLES[key]}", "", f"![{key}]({path.relative_to(run_dir).as_posix()})", ""]
    config_text = html.escape(json.dumps(config, indent=2))
    parts.append(f"<h2>Configuration</h2><pre>{config_text}</pre></body></html>")
    md += ["## Configuration", "", "```json", json.dumps(config, indent=2), "```", ""]
    html_path, md_path = run.file(RunFolder.REPORT_HTML), run.file(RunFolder.REPORT_MD)
    fileio.write_text(html_path, "\n".join(parts))
    fileio.write_text(md_path, "\n".join(md))
    return html_path, md_path
