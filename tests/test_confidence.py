"""Knowing when not to rotate: calibrated confidence, runner-up, kept-unsure (issue 18)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from support import TINY_RUN
from upright.cli import main
from upright.confidence import (
    VIEWS,
    belief,
    calibration_report,
    fit_temperature,
    selective_accuracy,
)
from upright.data.samples import load_samples
from upright.geometry import PROTOCOL_CENTRE, rotate_image
from upright.models.heads import AngleBins, Softsign180
from upright.shipped import shipped_model

HEAD = AngleBins(8)


def _logits(peaks_per_view: list[list[tuple[float, float]]], sharpness: float = 2.0) -> torch.Tensor:
    """Raw outputs (VIEWS * N, 360): each view of each image a sum of Gaussian bumps at the
    given (angle in that view's frame, height)."""
    rows = []
    for k in range(VIEWS):
        for peaks in peaks_per_view:
            logit = torch.zeros(360)
            for angle, height in peaks:
                diff = torch.remainder(HEAD.centres - (angle + 90 * k) + 180, 360) - 180
                logit += height * torch.exp(-0.5 * (diff / sharpness) ** 2)
            rows.append(logit)
    return torch.stack(rows)


def test_a_shape_that_agrees_with_its_quarter_turns_is_confident_and_noise_is_not():
    raw = _logits([[(30.0, 12.0)]])
    sure = belief(HEAD, raw, torch.tensor([30.0]))
    assert sure.confidence[0] > 0.95 and np.isnan(sure.second_angle[0])
    # Views that each point somewhere else (as noise does): the mass spreads.
    rows = [_logits([[(a, 12.0)]])[k] for k, a in enumerate((30.0, -100.0, 75.0, 160.0))]
    unsure = belief(HEAD, torch.stack(rows), torch.tensor([30.0]))
    assert unsure.confidence[0] < 0.3


def test_the_angle_is_the_peak_of_the_four_views_mean_distribution():
    """Views that each place the up a little differently: the angle sits among them (the
    mean distribution's peak), not at the first view's."""
    from upright.confidence import four_view_angle

    rows = [_logits([[(a, 12.0)]], sharpness=6.0)[k] for k, a in enumerate((20.0, 26.0, 24.0, 22.0))]
    raw = torch.stack(rows)
    assert float(HEAD.decode(raw[:1])[0]) == pytest.approx(20.0, abs=0.5)  # the first view
    assert float(four_view_angle(HEAD, raw)[0]) == pytest.approx(23.0, abs=0.6)


def test_an_input_that_cannot_turn_in_place_is_as_sure_as_its_one_view():
    """A non-square input has no quarter-turn views: its one view stands for all four, and
    a sharp distribution stays sharp (the turning back must not smear it over the quarters)."""
    from upright.models.model import AngleModel, ModelSpec

    for height, width, expected in ((28, 36, 1.0), (28, 28, 0.25)):
        model = AngleModel(ModelSpec(backbone="compact", head="bins", height=height, width=width)).eval()
        with torch.no_grad():  # the same sharp answer, 0 degrees, for every input
            model.head.linear.weight.zero_()
            model.head.linear.bias.copy_(torch.where(torch.arange(360) == 180, 20.0, -20.0))
        result = model.predict_belief(torch.rand(3, 1, height, width))
        # Square: the quarter turns all answer 0 too, so the image has no up of its own
        # (four equal modes, a quarter of the mass each).
        np.testing.assert_allclose(result.confidence, expected, atol=1e-3)
    np.testing.assert_allclose(result.angle % 90, 0.5, atol=1e-3)


def test_a_symmetric_shape_reports_its_runner_up_180_degrees_away():
    raw = _logits([[(30.0, 12.0), (-150.0, 11.5)]])
    b = belief(HEAD, raw, torch.tensor([30.0]))
    assert abs(((b.second_angle[0] + 150) + 180) % 360 - 180) <= 1.0
    assert 0.3 < b.second_mass[0] < 0.5 and 0.4 < b.confidence[0] < 0.7


def test_a_head_without_a_distribution_has_no_confidence_not_an_invented_one():
    b = belief(Softsign180(8), None, torch.tensor([10.0, -20.0]))
    assert np.isnan(b.confidence).all() and np.isnan(b.second_angle).all()


def test_temperature_fitting_calibrates_an_overconfident_model():
    """Sharp distributions that are right only 60% of the time: the fitted temperature
    brings the confidence down to the hit rate."""
    rng = np.random.default_rng(0)
    n = 400
    truth = rng.uniform(-180, 180, n)
    hit = rng.random(n) < 0.6
    predicted = np.where(hit, truth + rng.normal(0, 1, n), truth + rng.uniform(20, 340, n))
    predicted = (predicted + 180) % 360 - 180
    raw = _logits([[(float(a), 30.0)] for a in predicted], sharpness=1.5)
    angle = torch.tensor(predicted, dtype=torch.float32)
    before = calibration_report(belief(HEAD, raw, angle, 1.0).confidence, hit)
    temperature = fit_temperature(HEAD, raw, angle, hit)
    after = calibration_report(belief(HEAD, raw, angle, temperature).confidence, hit)
    assert before["ece"] > 0.3 and after["ece"] < 0.08
    assert abs(after["mean_confidence"] - 0.6) < 0.08


def test_calibration_report_and_selective_accuracy_on_known_values():
    confidence = np.array([0.95, 0.95, 0.15, 0.15])
    correct = np.array([True, True, False, True])
    report = calibration_report(confidence, correct, bins=10)
    assert report["ece"] == pytest.approx(0.5 * 0.05 + 0.5 * abs(0.15 - 0.5))
    assert [b["count"] for b in report["bins"]] == [2, 2]
    rows = {r["threshold"]: r for r in selective_accuracy(confidence, correct, np.array([0.0, 0.5]))}
    assert rows[0.0]["coverage"] == 1.0 and rows[0.0]["within_5_accepted"] == 0.75
    assert rows[0.5]["coverage"] == 0.5 and rows[0.5]["within_5_accepted"] == 1.0


needs_shipped = pytest.mark.skipif(shipped_model("mnist") is None, reason="no shipped model installed")


@needs_shipped
def test_the_shipped_models_carry_a_temperature_and_an_ece_within_target():
    for name in ("mnist", "faces"):
        info = json.loads((shipped_model(name) / "model.json").read_text())
        assert 0.05 < info["calibration"]["temperature"] < 20
        assert info["metrics"]["ece"] <= 0.03, name


def _rows(out):
    with open(out / "angles.csv", newline="") as f:
        return {r["file"].rsplit("/", 1)[-1]: r for r in csv.DictReader(f)}


@needs_shipped
def test_blank_constant_and_flat_colour_images_are_kept_unsure_and_copied_untouched(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(src / "blank.png")
    Image.fromarray(np.full((40, 60), 200, np.uint8)).save(src / "paper.png")
    Image.fromarray(np.full((50, 50, 3), (200, 30, 30), np.uint8)).save(src / "red.png")
    digits = load_samples("mnist")
    keep = np.flatnonzero(np.isin(digits.groups, [2, 3, 4, 5, 7, 9]))[:12]
    for i in keep:
        turned = rotate_image(digits.images[i], 60.0, centre=PROTOCOL_CENTRE)
        Image.fromarray(turned).save(src / f"digit{i}.png")
    out = tmp_path / "out"
    assert main(["correct", str(src), "-o", str(out), "--no-progress"]) == 0
    rows = _rows(out)
    for name in ("blank.png", "paper.png", "red.png"):
        assert rows[name]["action"] == "kept-unsure" and float(rows[name]["confidence"]) == 0.0
        assert (out / name).read_bytes() == (src / name).read_bytes()
    turned = [r for n, r in rows.items() if n.startswith("digit")]
    assert sum(r["action"] == "rotated" for r in turned) >= 9  # most real digits are turned
    assert all(r["confidence"] != "" for r in turned)
    # --min-confidence 0 turns everything that has content.
    out0 = tmp_path / "out0"
    assert main(["correct", str(src), "-o", str(out0), "--min-confidence", "0", "--no-progress"]) == 0
    assert all(r["action"] == "rotated" for n, r in _rows(out0).items() if n.startswith("digit"))


@needs_shipped
@pytest.mark.parametrize("model, size", [("mnist", 28), ("faces", 64)])
def test_noise_of_every_kind_is_kept_unsure(tmp_path, model, size):
    """Noise has no up: each shipped model (trained with no-up images toward a flat
    distribution) keeps all of it, kinds it never saw in training included."""
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(5)
    shape = (size, size)
    for i in range(15):
        Image.fromarray(rng.integers(0, 256, shape, np.uint8)).save(src / f"uniform{i}.png")
        gaussian = np.clip(rng.normal(128, 50, shape), 0, 255).astype(np.uint8)
        Image.fromarray(gaussian).save(src / f"gaussian{i}.png")
        dots = ((rng.random(shape) < rng.uniform(0.02, 0.3)) * 255).astype(np.uint8)
        Image.fromarray(dots).save(src / f"saltpepper{i}.png")  # not a training kind
    out = tmp_path / "out"
    assert main(["correct", str(src), "-o", str(out), "--model", model, "--no-progress"]) == 0
    rows = _rows(out)
    assert len(rows) == 45
    assert {name: r["action"] for name, r in rows.items() if r["action"] != "kept-unsure"} == {}


def test_a_model_without_a_distribution_turns_everything_and_says_it_has_no_confidence(tiny_run, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(src / "blank.png")
    out = tmp_path / "out"
    assert main(["correct", str(src), "--model", str(tiny_run), "-o", str(out), "--no-progress"]) == 0
    row = _rows(out)["blank.png"]
    assert row["action"] == "rotated" and row["confidence"] == "" and row["second_angle"] == ""
    assert json.loads((out / "angles.json").read_text())[0]["confidence"] is None


@pytest.fixture(scope="module")
def bins_run(tmp_path_factory, glyph_folder):
    from upright.experiments import train_run
    from upright.recipes import make_config

    run = tmp_path_factory.mktemp("runs") / "bins"
    config = make_config("mnist-fast", {**TINY_RUN, "dataset": f"folder:{glyph_folder}", "max_time": None,
                                        "max_epochs": 3, "angles_per_epoch": 24})
    train_run(config, run, progress=False, report=True)
    return run


@pytest.mark.slow  # a training run of its own: 6 s; CI runs it
def test_a_distribution_head_is_calibrated_after_training_and_reports_it(bins_run):
    from upright.runs import RunFolder

    run = RunFolder(bins_run)
    calibration = run.metrics()["calibration"]
    assert 0.05 < calibration["temperature"] < 20 and calibration["fitted_on"] == "validation"
    test = calibration["test"]
    assert 0 <= test["ece"] <= 1 and sum(b["count"] for b in test["bins"]) == 15 * 4
    assert [r["threshold"] for r in calibration["selective"]][:2] == [0.0, 0.05]
    assert calibration["selective"][0]["coverage"] == 1.0
    assert set(calibration["per_group"]) == {str(g) for g in range(60)} & set(calibration["per_group"])
    info = run.model_info()
    assert info["calibration"]["temperature"] == calibration["temperature"]
    assert info["metrics"]["ece"] == test["ece"]
    variants = run.metrics()["robustness"]["variants"]
    assert all("ece" in v for v in variants.values())
    assert run.plot("calibration").is_file()


@pytest.mark.parametrize("name", ["mnist", "faces"])
def test_views_turned_after_the_levels_give_what_turned_images_give(name):
    """The levels are found once per image and the four views turned after them: the same
    raw outputs as turning the images first (the shipped masks look the same turned)."""
    import torch

    from upright.checkpoint import load
    from upright.confidence import quarter_turn_views

    model, _ = load(shipped_model(name))
    model.eval()
    torch.manual_seed(0)
    size = model.spec.height
    images = torch.rand(6, model.spec.channels, size, size) * torch.rand(6, 1, 1, 1)
    with torch.no_grad():
        fast, plain = model.quarter_turn_raw(images), model(quarter_turn_views(images))
    assert torch.allclose(fast, plain, atol=1e-4)
