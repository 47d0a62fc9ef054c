"""The demo works anywhere: shipped samples, no dataset, no network (issue 20, item 6)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from upright.cli import main
from upright.data.samples import load_samples
from upright.shipped import shipped_model

pytestmark = pytest.mark.skipif(shipped_model("mnist") is None, reason="no shipped model installed")


@pytest.fixture
def no_dataset(tmp_path, monkeypatch):
    """A mirror folder without the files and an empty cache: any dataset read fails at once."""
    (tmp_path / "empty-mirror").mkdir()
    monkeypatch.setenv("UPRIGHT_DATA_MIRROR", str(tmp_path / "empty-mirror"))
    monkeypatch.setenv("UPRIGHT_CACHE_DIR", str(tmp_path / "empty-cache"))


def test_the_shipped_samples_are_small_plain_arrays():
    digits, faces = load_samples("mnist"), load_samples("olivetti")
    assert digits.images.shape == (500, 28, 28) and set(digits.groups) == set(range(10))
    assert faces.images.shape == (60, 64, 64) and len(set(faces.groups)) == 12
    assert digits.images.dtype == faces.images.dtype == np.uint8


@pytest.mark.parametrize("model, kind", [("mnist", "digits"), ("faces", "faces")])
def test_demo_corrects_shipped_samples_offline_and_says_how_to_get_the_full_protocol(
        tmp_path, capsys, no_dataset, model, kind):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--model", model, "--count", "24", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert f"24 turned {kind}" in text
    assert "full test protocol skipped" in text and "UPRIGHT_DATA_MIRROR" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"] is None
    assert metrics["sample_median_error"] < (10 if model == "mnist" else 3)
    assert len(list((out / "corrected").glob("*.png"))) == 24
    with Image.open(out / "before_after.png") as grid:
        assert grid.size[0] > 600 and np.asarray(grid).std() > 10


def test_demo_keeps_to_the_digits_its_model_was_trained_for(tmp_path, no_dataset):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--count", "150", "--samples-only", "--no-progress"]) == 0
    samples = load_samples("mnist")
    by_index = dict(zip(samples.indices.tolist(), samples.groups.tolist(), strict=True))
    digits = {by_index[int(p.name[4:9])] for p in (out / "rotated").glob("*.png")}
    assert digits == {2, 3, 4, 5, 7, 9}  # 0, 1, 6 and 8 are left out, as in training
