"""The Python API: upright.load, predict, upright, correct (issue 19's core)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import upright
from upright.data.samples import load_samples
from upright.errors import UserError
from upright.geometry import PROTOCOL_CENTRE, rotate_image
from upright.shipped import shipped_model

pytestmark = pytest.mark.skipif(shipped_model("mnist") is None, reason="no shipped model installed")
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def model():
    return upright.load("mnist")


def _digit(angle: float) -> np.ndarray:
    samples = load_samples("mnist")
    index = int(np.flatnonzero(samples.groups == 7)[0])
    return rotate_image(samples.images[index], angle, centre=PROTOCOL_CENTRE)


def _close(a: float, b: float, tolerance: float) -> bool:
    return abs((a - b + 180) % 360 - 180) <= tolerance


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    code = re.search(r"## Python API\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(code.strip().splitlines()) == 5
    monkeypatch.chdir(tmp_path)
    Image.fromarray(_digit(70.0)).save("digit.png")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    assert _close(namespace["result"].angle, 70.0, 12) and 0 <= namespace["result"].confidence <= 1
    with Image.open("digit-upright.png") as fixed:
        assert fixed.size == (28, 28)


def test_every_kind_of_image_gives_the_same_prediction(model, tmp_path):
    pixels = _digit(-40.0)
    Image.fromarray(pixels).save(tmp_path / "d.png")
    kinds = [pixels, Image.fromarray(pixels), tmp_path / "d.png", str(tmp_path / "d.png"),
             pixels.astype(np.float32) / 255.0, np.dstack([pixels] * 3)]
    predictions = [model.predict(k) for k in kinds]
    assert all(p.angle == pytest.approx(predictions[0].angle, abs=0.5) for p in predictions)
    assert _close(predictions[0].angle, -40.0, 12)
    batch = model.predict(np.stack([pixels, _digit(100.0)]))
    listed = model.predict([pixels, Image.fromarray(_digit(100.0))])
    assert len(batch) == len(listed) == 2
    assert [p.angle for p in batch] == pytest.approx([p.angle for p in listed], abs=1e-4)
    assert _close(batch[1].angle, 100.0, 12)
    assert model.predict([]) == []


def test_upright_turns_by_minus_the_prediction_and_keeps_the_kind_of_image(model):
    pixels = _digit(55.0)
    angle = model.predict(pixels).angle
    turned = model.upright(pixels)
    assert isinstance(turned, np.ndarray)
    np.testing.assert_array_equal(turned, rotate_image(pixels, -angle))
    as_pil = model.upright(Image.fromarray(pixels), canvas="expand", fill="white")
    assert isinstance(as_pil, Image.Image) and as_pil.size[0] > 28
    blank = np.zeros((28, 28), np.uint8)
    assert model.predict(blank).confidence == 0.0
    np.testing.assert_array_equal(model.upright(blank), blank)  # the command's default threshold
    assert model.upright(blank, min_confidence=0.0).shape == blank.shape


def test_upright_correct_is_what_the_command_runs(model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_digit(30.0)).save(src / "a.png")
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(src / "blank.png")
    rows = upright.correct(src, tmp_path / "out", model=model)
    actions = {Path(r.file).name: r.action for r in rows}
    assert actions == {"a.png": "rotated", "blank.png": "kept-unsure"}
    assert rows.report == tmp_path / "out" / "angles.csv"
    with pytest.raises(UserError, match="unexpected keyword"):
        upright.correct(src, tmp_path / "out2", model=model, canvass="same")


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 2, 2, 2)), np.full((4, 4), 2.0), np.zeros((4, 4), np.int64),
                                 np.zeros((2, 4, 4, 7), np.uint8)])
def test_what_is_not_an_image_is_a_clear_error(model, bad):
    with pytest.raises(UserError):
        model.predict(bad)


def test_a_model_without_a_distribution_says_it_has_no_confidence(tiny_run):
    prediction = upright.load(tiny_run).predict(np.zeros((28, 28), np.uint8))
    assert prediction.confidence is None and prediction.second_angle is None


@pytest.mark.parametrize("options", [
    {"fill": "bogus"}, {"fill": (1, 2)}, {"fill": (300, -5, 0)}, {"fill": 1.5},
    {"min_confidence": float("nan")}, {"min_confidence": 5}, {"threshold": -5}, {"jpeg_quality": 500},
    {"workers": 0}, {"batch_size": 0},
    {"memory_budget": 0}, {"canvas": "round"}, {"batch_size": True},
])
def test_correct_checks_its_options_as_the_command_does_before_any_output(model, tmp_path, options):
    Image.fromarray(_digit(30.0)).save(tmp_path / "a.png")
    with pytest.raises(UserError, match=next(iter(options)).split("_")[0]):
        upright.correct(tmp_path / "a.png", tmp_path / "out", model=model, **options)
    assert not (tmp_path / "out").exists()


def test_upright_checks_fill_and_threshold_and_takes_a_grey_level(model):
    pixels = _digit(55.0)
    for bad in ({"fill": (1, 2)}, {"fill": (300, -5, 0)}, {"min_confidence": -1}, {"canvas": "round"}):
        with pytest.raises(UserError):
            model.upright(pixels, **bad)
    grey = model.upright(pixels, canvas="expand", fill=128, min_confidence=0.0)
    assert grey[0, 0] == 128


def test_upright_gives_16_bit_colour_as_an_array_and_refuses_empty_images(model, tmp_path):
    import cv2

    rgb16 = (np.dstack([_digit(40.0)] * 3).astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "deep.png"), rgb16[:, :, ::-1])
    turned = model.upright(tmp_path / "deep.png", min_confidence=0.0)
    assert isinstance(turned, np.ndarray) and turned.dtype == np.uint16 and turned.shape == rgb16.shape
    assert turned.max() > 255 * 257 // 2  # the digit's 16-bit levels, not 8-bit ones
    for empty in (np.zeros((0, 0), np.uint8), Image.new("L", (0, 0))):
        with pytest.raises(UserError, match="holds no pixels"):
            model.predict(empty)


def test_a_path_that_is_no_file_says_what_it_is(model, tmp_path):
    with pytest.raises(UserError, match="missing.png: no such file"):
        model.predict(tmp_path / "missing.png")
    with pytest.raises(UserError, match="a folder, not an image file"):
        model.predict(tmp_path)


def test_upright_takes_an_rgba_fill_for_images_with_alpha(model):
    digit = _digit(55.0)
    rgba = np.dstack([digit] * 3 + [np.full_like(digit, 255)])
    opaque = np.asarray(model.upright(Image.fromarray(rgba, "RGBA"), canvas="expand",
                                      fill=(255, 0, 0, 255), min_confidence=0.0))
    assert tuple(opaque[0, 0]) == (255, 0, 0, 255)  # the corner: the fill, opaque as asked
    clear = np.asarray(model.upright(Image.fromarray(rgba, "RGBA"), canvas="expand",
                                     fill=(255, 0, 0), min_confidence=0.0))
    assert tuple(clear[0, 0]) == (255, 0, 0, 0)  # no alpha given: transparent corners, as before
    grey_alpha = np.asarray(model.upright(Image.fromarray(np.dstack([digit, np.full_like(digit, 255)]), "LA"),
                                          canvas="expand", fill="#ffffff80", min_confidence=0.0))
    assert tuple(grey_alpha[0, 0]) == (255, 128)
    without_alpha = np.asarray(model.upright(Image.fromarray(np.dstack([digit] * 3)), canvas="expand",
                                             fill=(0, 255, 0, 9), min_confidence=0.0))
    assert tuple(without_alpha[0, 0]) == (0, 255, 0)  # an image without alpha takes the colour
    for bad in ((1, 2, 3, 4, 5), (0, 0, 0, 256), "#ff00ff0", "1,2,3,4,5"):
        with pytest.raises(UserError, match="not a fill colour"):
            model.upright(digit, fill=bad)
