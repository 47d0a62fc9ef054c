"""Copy a trained run's checkpoint into the package as a shipped model, with a model card.

    python scripts/ship_model.py RUN mnist [--accuracy ACC.json] [--limitations NOTES.md]

``--accuracy`` takes ``bench/accuracy.py``'s JSON for the run and adds its other-resampler
and test-time-augmentation figures; ``--limitations`` adds a hand-written section.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from upright.shipped import SHIPPED_MODELS


def _border_cue_lines(blank: dict | None) -> list[str]:
    """What the model gets from the corners alone (content replaced by flat grey)."""
    if not blank:
        return []
    return [f"Border cue (test images with their content blanked, only the rotated corners "
            f"left): circular MAE {blank['circular_mae']:.1f} deg, within 5 deg modulo 90 "
            f"{blank['within_5_modulo_90']:.1%} (chance: 90 deg and about 11%).", ""]


def _accuracy_lines(accuracy: dict | None, name: str) -> list[str]:
    """The same test items rotated by other libraries, and with test-time augmentation."""
    if not accuracy:
        return []
    standard = accuracy["standard"]["circular_mae"]
    rows = [("ours (bilinear, the protocol)", "standard"), ("ours, with TTA", "standard_tta"),
            ("Pillow `rotate(BICUBIC)`", "pillow_bicubic"),
            ("Pillow, with TTA", "pillow_bicubic_tta"),
            ("Pillow `rotate()` default (nearest)", "pillow_nearest"),
            ("OpenCV Lanczos-4 (in no training mix)", "opencv_lanczos")]
    lines = [f"## Other resamplers (`python bench/accuracy.py --model {name}`)", "",
             "| test items rotated by | circular MAE | within 5 deg | x ours |", "|---|---|---|---|"]
    for label, key in rows:
        if key in accuracy:
            m = accuracy[key]
            lines.append(f"| {label} | {m['circular_mae']:.3f} | {m['within_5']:.2%} | "
                         f"{m['circular_mae'] / standard:.2f} |")
    return lines + [""]


def card(run: Path, name: str, accuracy: dict | None = None, limitations: str = "") -> str:
    model = json.loads((run / "model.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    config = json.loads((run / "config.json").read_text())
    test, training = metrics["test"], metrics["training"]
    spec = model["model"]
    return "\n".join([
        f"# Shipped model `{name}`",
        "",
        f"Backbone `{spec['backbone']}`, head `{spec['head']}`, input {spec['channels']}x"
        f"{spec['height']}x{spec['width']} (pixels / 255, then (x - {spec['mean']}) / {spec['std']}); "
        f"input mask `{spec.get('input_mask', 'none')}`"
        + (" (black outside the inscribed circle, so the corners a rotation leaves say nothing)."
           if spec.get("input_mask") == "circle" else "."),
        "",
        "## Data",
        "",
        f"Dataset `{config['dataset']}`; excluded groups {config['excluded_groups'] or 'the default'}; "
        f"{model['data']['images']['train']} training, {model['data']['images']['val']} validation "
        f"and {model['data']['images']['test']} test source images, split by source image "
        "(by person for Olivetti) before any rotation.",
        "",
        "## Protocol",
        "",
        f"Training rotates every batch on the fly at fresh angles; the test set is every test image "
        f"at {config['test_angles']} seeded integer angles in [-180, 180) (seed {config['eval_seed']}), "
        "counter-clockwise positive, bilinear, black fill.",
        "",
        "## Metrics (test set)",
        "",
        f"circular MAE {test['circular_mae']:.3f} deg, linear MAE {test['linear_mae']:.3f}, median "
        f"{test['median_error']:.3f}, 95th percentile {test['p95_error']:.3f}; within 1/2/5/10 deg: "
        f"{test['within_1']:.2%} / {test['within_2']:.2%} / {test['within_5']:.2%} / "
        f"{test['within_10']:.2%} ({test['count']:,} images).",
        "",
        *_border_cue_lines(metrics.get("blank_content")),
        *_accuracy_lines(accuracy, name),
        *(["## Limitations", "", limitations.strip(), ""] if limitations.strip() else []),
        f"Training: {training.get('epochs')} epochs, {training.get('samples_seen'):,} samples in "
        f"{training.get('train_seconds')} s ({training.get('images_per_second')} images/s) on a "
        "2-core CPU.",
        "",
        "## Command that trained it",
        "",
        "```",
        model.get("made_by", {}).get("command") or "upright train (see model.json)",
        "```",
        "",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("name", choices=sorted(SHIPPED_MODELS))
    parser.add_argument("--accuracy", type=Path, help="bench/accuracy.py JSON for this run")
    parser.add_argument("--limitations", type=Path, help="markdown: what the model cannot do")
    args = parser.parse_args()
    run, name = args.run, args.name
    accuracy = json.loads(args.accuracy.read_text()) if args.accuracy else None
    limitations = args.limitations.read_text() if args.limitations else ""
    dest = SHIPPED_MODELS[name]
    dest.mkdir(parents=True, exist_ok=True)
    for file in ("model.safetensors", "model.json"):
        shutil.copyfile(run / file, dest / file)
    (dest / "MODEL_CARD.md").write_text(card(run, name, accuracy, limitations))
    print(f"shipped {run} as {name}: {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
