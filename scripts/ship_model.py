"""Copy a trained run's checkpoint into the package as a shipped model, with a model card.

    python scripts/ship_model.py RUN mnist [--accuracy ACC.json] [--limitations NOTES.md]

The card carries the run's metrics and its robustness suite (metrics.json); ``--accuracy``
takes ``bench/accuracy.py``'s JSON for the run and adds its test-time-augmentation
figures; ``--limitations`` adds a hand-written section.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from upright.runs import RunFolder
from upright.shipped import SHIPPED_MODELS


def _border_cue_lines(blank: dict | None) -> list[str]:
    """What the model gets from the corners alone (content replaced by flat grey)."""
    if not blank:
        return []
    return [f"Border cue (test images with their content blanked, only the rotated corners "
            f"left): circular MAE {blank['circular_mae']:.1f} deg, within 5 deg modulo 90 "
            f"{blank['within_5_modulo_90']:.1%} (chance: 90 deg and about 11%).", ""]


def _robustness_lines(suite: dict | None) -> list[str]:
    """The robustness suite from the run's metrics.json: the headline for a user."""
    if not suite:
        return []
    from upright.robustness import SUITE, VARIANTS

    protocol = suite["protocol"]
    lines = ["## Robustness suite (what to expect on your images)", "",
             f"The same {protocol['count']:,} test items, turned by other means than the protocol "
             "(`upright evaluate`, `python bench/accuracy.py`).", "",
             "| test items ... | circular MAE | within 5 deg |", "|---|---|---|",
             f"| turned as the protocol does | {protocol['circular_mae']:.2f} | {protocol['within_5']:.2%} |"]
    for name, v in suite["variants"].items():
        tag = "" if name in SUITE else " (held out)"
        label = VARIANTS[name].description if name in VARIANTS else name
        lines.append(f"| {label}{tag} | {v['circular_mae']:.2f} | {v['within_5']:.2%} |")
    for key, label in (("suite", "Suite"), ("held_out", "Held-out variations")):
        if key in suite:
            part = suite[key]
            lines += ["", f"{label}: mean circular MAE {part['mean_circular_mae']:.2f} deg, worst "
                          f"{part['worst']} ({part['worst_circular_mae']:.2f} deg), lowest within 5 deg "
                          f"{part['min_within_5']:.1%}."]
    return lines + [""]


def _tta_lines(accuracy: dict | None, name: str) -> list[str]:
    """Test-time augmentation on the full protocol, from bench/accuracy.py's JSON."""
    if not accuracy or "protocol_tta" not in accuracy:
        return []
    plain, tta = accuracy["protocol"], accuracy["protocol_tta"]
    return [f"## Test-time augmentation (`python bench/accuracy.py --model {name}`)", "",
            f"Full protocol: circular MAE {plain['circular_mae']:.3f} deg without, "
            f"{tta['circular_mae']:.3f} with `--tta` ({accuracy.get('tta_cost_ratio', '?')}x the time).",
            ""]


def _confidence_lines(calibration: dict | None) -> list[str]:
    if not calibration:
        return ["## Confidence", "", "The head has no distribution over angles: no confidence.", ""]
    test = calibration["test"]
    default = next((r for r in calibration["selective"] if r["threshold"] == 0.5), None)
    lines = ["## Confidence", "",
             f"Temperature {calibration['temperature']:.3f} (fitted on {calibration['items']:,} "
             f"validation items); on the test protocol the expected calibration error is "
             f"{test['ece']:.3f} (mean confidence {test['mean_confidence']:.3f}, "
             f"{test['within_5']:.1%} within 5 degrees)."]
    if default and default["within_5_accepted"] is not None:
        lines[-1] += (f" At `--min-confidence 0.5`, {default['coverage']:.1%} of the images are "
                      f"turned and {default['within_5_accepted']:.1%} of those are within 5 degrees.")
    return lines + [""]


def card(run: Path, name: str, accuracy: dict | None = None, limitations: str = "") -> str:
    folder = RunFolder(run)
    model, metrics, config = folder.model_info(), folder.metrics(), folder.config_dict()
    test, training = metrics["test"], metrics["training"]
    spec = model["model"]
    return "\n".join([
        f"# Shipped model `{name}`",
        "",
        f"Backbone `{spec['backbone']}`, head `{spec['head']}`, input {spec['channels']}x"
        f"{spec['height']}x{spec['width']} (pixels / 255, levels `{spec.get('levels', 'raw')}`, framing "
        f"`{spec.get('framing', 'none')}`"
        + (" (content off centre, too small or too large is moved and scaled into the band training covers)"
           if spec.get("framing") == "moments" else "")
        + f", then (x - {spec['mean']}) / {spec['std']}); input mask `{spec.get('input_mask', 'none')}`"
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
        "counter-clockwise positive, bilinear, black fill, about (w / 2, h / 2) as the article's "
        "`cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)`.",
        "",
        "## Metrics (test set)",
        "",
        f"circular MAE {test['circular_mae']:.3f} deg, linear MAE {test['linear_mae']:.3f}, median "
        f"{test['median_error']:.3f}, 95th percentile {test['p95_error']:.3f}; within 1/2/5/10 deg: "
        f"{test['within_1']:.2%} / {test['within_2']:.2%} / {test['within_5']:.2%} / "
        f"{test['within_10']:.2%} ({test['count']:,} images).",
        "",
        *_border_cue_lines(metrics.get("blank_content")),
        *_robustness_lines(metrics.get("robustness")),
        *_confidence_lines(metrics.get("calibration")),
        *_tta_lines(accuracy, name),
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
    for file in (RunFolder.WEIGHTS, RunFolder.MODEL_INFO):
        shutil.copyfile(run / file, dest / file)
    (dest / "MODEL_CARD.md").write_text(card(run, name, accuracy, limitations))
    print(f"shipped {run} as {name}: {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
