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


def test_card_reports_the_robustness_suite_tta_and_the_limitations(tmp_path):
    model = json.loads((SHIPPED_MODELS["mnist"] / "model.json").read_text())
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.json").write_text(json.dumps(model))
    suite = {"protocol": {**_summary(1.5, 0.98), "count": 11906},
             "variants": {"pose": _summary(2.0, 0.95), "inverted": _summary(1.6, 0.97),
                          "blur": _summary(3.5, 0.9)},
             "suite": {"mean_circular_mae": 1.8, "min_within_5": 0.95, "worst": "pose",
                       "worst_circular_mae": 2.0},
             "held_out": {"mean_circular_mae": 3.5, "min_within_5": 0.9, "worst": "blur",
                          "worst_circular_mae": 3.5}}
    (run / "metrics.json").write_text(json.dumps({
        "test": model["metrics"]["test"], "training": model["training"], "robustness": suite,
        "blank_content": {"circular_mae": 90.5, "within_5_modulo_90": 0.12}}))
    (run / "config.json").write_text(json.dumps(
        {"dataset": "mnist", "excluded_groups": None, "test_angles": 20, "eval_seed": 2024}))
    accuracy = {"protocol": _summary(1.5, 0.98), "protocol_tta": _summary(1.2, 0.99),
                "tta_cost_ratio": 4.1}

    text = _ship_module().card(run, "mnist", accuracy, "Reads shapes only.\n")

    assert f"circular MAE {model['metrics']['test']['circular_mae']:.3f} deg" in text
    assert "| turned as the protocol does | 1.50 | 98.00% |" in text
    assert "| shifted up to 2 px, scaled 0.85-1.15, then turned | 2.00 | 95.00% |" in text
    assert "| Gaussian blur, sigma 1 px, after the turn (held out) | 3.50 | 90.00% |" in text
    assert "Suite: mean circular MAE 1.80 deg, worst pose (2.00 deg)" in text
    assert "1.200 with `--tta` (4.1x the time)" in text
    assert "## Limitations\n\nReads shapes only.\n" in text
    assert "cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)" in text
    assert "Test-time augmentation" not in _ship_module().card(run, "mnist")
