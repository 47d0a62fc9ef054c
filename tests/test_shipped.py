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


def test_shipped_faces_model_does_not_read_the_rotation_corners():
    # Olivetti backgrounds are grey, so a rotation's black corners give the angle away
    # (modulo 90); the shipped model must be at chance once the face itself is blanked.
    if shipped_model("faces") is None:
        pytest.skip("shipped model faces not installed")
    if not _have_mirror("olivetti"):
        pytest.skip("no mirror for olivetti")
    from upright.evaluation import blank_content_set, modulo_90_error

    predictor = load_predictor("faces")
    _, splits = prepare_data(make_config("faces-compact"))
    blank = blank_content_set(splits.test.images[:60], splits.test.indices[:60], 10, seed=5)
    x = rotate_batch(to_float_images(torch.from_numpy(blank.images[blank.source])),
                     torch.from_numpy(blank.angles.astype(np.float32)))
    mod90 = modulo_90_error(predictor.predict(x.numpy()), blank.angles.astype(np.float64))
    assert (mod90 <= 5).mean() < 0.3  # chance is about 11%; corner reading gives 100%
