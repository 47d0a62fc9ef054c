"""scripts/ship_model.py: the model card carries the run's numbers, other resamplers' and notes."""

import importlib.util
import json
from pathlib import Path

from upright.shipped import SHIPPED_MODELS

ROOT = Path(__file__).resolve().parents[1]


def _ship_module():
    spec = importlib.util.spec_from_file_location("ship_model", ROOT / "scripts" / "ship_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _summary(mae: float, within_5: float) -> dict:
    return {"circular_mae": mae, "within_5": within_5}


def test_card_reports_other_resamplers_relative_to_ours_and_the_limitations(tmp_path):
    model = json.loads((SHIPPED_MODELS["mnist"] / "model.json").read_text())
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.json").write_text(json.dumps(model))
    (run / "metrics.json").write_text(json.dumps({
        "test": model["metrics"]["test"], "training": model["training"],
        "blank_content": {"circular_mae": 90.5, "within_5_modulo_90": 0.12}}))
    (run / "config.json").write_text(json.dumps(
        {"dataset": "mnist", "excluded_groups": None, "test_angles": 20, "eval_seed": 2024}))
    accuracy = {"standard": _summary(1.5, 0.98), "standard_tta": _summary(1.2, 0.99),
                "pillow_bicubic": _summary(3.0, 0.9), "pillow_nearest": _summary(2.25, 0.95),
                "opencv_lanczos": _summary(1.8, 0.97)}

    text = _ship_module().card(run, "mnist", accuracy, "Reads shapes only.\n")

    assert f"circular MAE {model['metrics']['test']['circular_mae']:.3f} deg" in text
    assert "| Pillow `rotate(BICUBIC)` | 3.000 | 90.00% | 2.00 |" in text
    assert "| Pillow `rotate()` default (nearest) | 2.250 | 95.00% | 1.50 |" in text
    assert "| OpenCV Lanczos-4 (in no training mix) | 1.800 | 97.00% | 1.20 |" in text
    assert "Pillow, with TTA" not in text  # not measured, not printed
    assert "## Limitations\n\nReads shapes only.\n" in text
    assert "## Other resamplers (`python bench/accuracy.py --model mnist`)" in text
    assert "## Other resamplers" not in _ship_module().card(run, "mnist")
