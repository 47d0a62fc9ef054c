"""The README's jobs, end to end on the real data (slow: minutes)."""

import json

import numpy as np
import pytest
from PIL import Image

from support import needs_mnist
from upright.cli import main
from upright.shipped import shipped_model

pytestmark = [pytest.mark.slow, needs_mnist]


def test_quickstart_trains_evaluates_and_corrects(tmp_path, capsys):
    # A step budget, not a time limit: on a busy machine 30 s of training fell short (MAE 85.7).
    assert main(["quickstart", "--runs-dir", str(tmp_path), "--max-time", "10m", "--max-steps", "35",
                 "--no-progress"]) == 0
    [run] = list(tmp_path.iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["count"] == 119060
    assert metrics["training"]["stopped_by"] == "max_steps"
    assert metrics["training"]["samples_seen"] == 35 * 1024
    assert metrics["test"]["circular_mae"] < 80  # 35 steps (about 30 s) already beat chance (90)
    corrected = sorted((run / "samples" / "corrected").glob("*.png"))
    assert len(corrected) == 16
    assert all(Image.open(p).size == (28, 28) for p in corrected)
    assert (run / "report.html").is_file()
    assert (run / "plots" / "robustness.png").is_file()
    suite = metrics["robustness"]
    assert set(suite["variants"]) >= {"pose", "pillow_bicubic", "physical", "noise", "jpeg", "inverted"}
    assert all(v["count"] == 2 * 5953 for v in suite["variants"].values())
    out = capsys.readouterr().out
    assert "run folder:" in out
    assert f"robustness suite: mean circular MAE {suite['suite']['mean_circular_mae']:.2f}" in out


@pytest.mark.skipif(shipped_model("mnist") is None, reason="no shipped MNIST model installed")
def test_demo_corrects_digits_with_the_shipped_model(tmp_path):
    assert main(["demo", "-o", str(tmp_path / "demo"), "--count", "16", "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["test"]["count"] == 119060
    assert metrics["sample_median_error"] < 10
    with Image.open(tmp_path / "demo" / "before_after.png") as grid:
        assert np.asarray(grid).std() > 10
