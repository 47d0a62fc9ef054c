"""The models shipped inside the package."""

import numpy as np
import pytest
import torch

from conftest import _have_mirror
from upright.angles import circular_error
from upright.data.rotated import protocol_set, to_float_images
from upright.experiments import make_config, prepare_data
from upright.geometry import rotate_batch
from upright.predictors import load_predictor
from upright.shipped import SHIPPED_MODELS, shipped_model

CASES = [("mnist", "mnist-published", "mnist"), ("faces", "faces-published", "olivetti")]


@pytest.mark.parametrize("name, recipe, data", CASES)
def test_shipped_model_predicts_rotated_test_images(name, recipe, data, monkeypatch):
    if shipped_model(name) is None:
        pytest.skip(f"shipped model {name} not installed")
    if not _have_mirror(data):
        pytest.skip(f"no mirror for {data}")
    # No network: any download attempt would fail loudly.
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("network used"))
    predictor = load_predictor(name)
    _, splits = prepare_data(make_config(recipe))
    rotated = protocol_set(splits.test.images[:40], splits.test.indices[:40], 5, seed=77)
    x = rotate_batch(to_float_images(torch.from_numpy(rotated.images[rotated.source])),
                     torch.from_numpy(rotated.angles.astype(np.float32)))
    err = circular_error(predictor.predict(x.numpy()), rotated.angles.astype(np.float64))
    assert np.median(err) < 3.0
    assert (err <= 5).mean() > 0.85


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_shipped_model_is_small_and_has_a_card(name):
    folder = shipped_model(name)
    if folder is None:
        pytest.skip(f"shipped model {name} not installed")
    assert (folder / "model.safetensors").stat().st_size <= 5 * 1024 * 1024
    card = (folder / "MODEL_CARD.md").read_text()
    for needle in ("Data", "Protocol", "Metrics", "upright train"):
        assert needle in card
