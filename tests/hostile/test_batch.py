"""One file never aborts the batch (item 1); NaN models (6); frames (16); CMYK (4)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

from hostile.helpers import correct, digit, report_rows, save_png, strict_json
from upright.cli import main
from upright.correction import CorrectOptions, correct_paths
from upright.geometry import rotate_image
from upright.predictors import load_predictor


def test_item1_a_40000_pixel_wide_png_is_corrected_not_fatal(model, tmp_path):
    wide = np.zeros((40, 40_000), np.uint8)
    wide[:, ::97] = 255
    save_png(tmp_path / "in" / "wide.png", wide)
    save_png(tmp_path / "in" / "ok.png")
    out = tmp_path / "out"
    # A strip of thin lines has no up the model is sure of: turn it anyway (the point here).
    assert main(correct(tmp_path / "in", "--model", model, "-o", out, "--min-confidence", "0")) == 0
    csv_rows, json_rows = report_rows(out)
    assert [r["action"] for r in json_rows] == ["rotated", "rotated"]
    with Image.open(out / "wide.png") as written:
        assert written.size == (40_000, 40)
        written.load()


def test_item1_beyond_opencv_limit_rotation_is_exact_where_it_should_be():
    image = (np.arange(40 * 33_000, dtype=np.uint32) % 251).astype(np.uint8).reshape(40, 33_000)
    np.testing.assert_array_equal(rotate_image(image, 180.0), image[::-1, ::-1])
    turned = rotate_image(image, 90.0, canvas="expand")
    assert turned.shape == (33_000, 40)
    np.testing.assert_array_equal(turned, np.rot90(image, 1))


class _BuggyPredictor:
    """A real predictor whose second batch hits a bug (a TypeError is upright's fault)."""

    def __init__(self, inner):
        self.inner, self.spec, self.calls = inner, inner.spec, 0

    def predict(self, batch):
        self.calls += 1
        if self.calls == 2:
            raise TypeError("a bug in upright")
        return self.inner.predict(batch)


def test_item1_a_bug_stops_the_batch_and_the_rows_done_are_still_written(model, tmp_path):
    for i in range(4):
        save_png(tmp_path / "in" / f"d{i}.png", digit(seed=i))
    out = tmp_path / "out"
    predictor = _BuggyPredictor(load_predictor(model))
    with pytest.raises(TypeError, match="a bug"):
        correct_paths([tmp_path / "in"], predictor, out, CorrectOptions(batch_size=1, workers=1))
    csv_rows, json_rows = report_rows(out)
    assert [r["file"] for r in json_rows] == [str(tmp_path / "in" / "d0.png")]
    assert json_rows[0]["action"] == "rotated" and (out / "d0.png").is_file()


def _nan_model(model, folder):
    shutil.copytree(model, folder)
    state = load_file(str(folder / "model.safetensors"))
    save_file({k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in state.items()},
              str(folder / "model.safetensors"))
    return folder


def test_item6_a_model_that_yields_nan_fails_every_file_and_the_report_is_strict_json(model, tmp_path):
    nan_model = _nan_model(model, tmp_path / "nan-model")
    save_png(tmp_path / "in" / "a.png")
    save_png(tmp_path / "in" / "b.png")
    out = tmp_path / "out"
    assert main(correct(tmp_path / "in", "--model", nan_model, "-o", out)) == 1
    rows = strict_json(out / "angles.json")
    assert [r["action"] for r in rows] == ["failed", "failed"]
    assert all("no angle" in r["error"] and r["angle"] is None for r in rows)
    assert sorted(p.name for p in out.iterdir()) == ["angles.csv", "angles.json"]


@pytest.mark.parametrize("std", [[0.0], ["NaN"], [1.0, 1.0]])
def test_item6_a_model_whose_std_is_zero_nan_or_of_the_wrong_length_does_not_load(model, tmp_path, capsys,
                                                                                  std):
    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    config = json.loads((folder / "model.json").read_text())
    config["model"]["std"] = [float(v) for v in std]
    (folder / "model.json").write_text(json.dumps(config))
    save_png(tmp_path / "a.png")
    assert main(correct(tmp_path / "a.png", "--model", folder, "-o", tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.json" in err[0] and "std" in err[0]
    assert not (tmp_path / "out").exists()


def test_item16_multi_frame_tiff_and_animated_webp_are_refused_and_gif_is_listed(model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    frames = [Image.fromarray(digit(seed=i)) for i in range(3)]
    frames[0].save(src / "pages.tiff", save_all=True, append_images=frames[1:])
    frames[0].convert("RGB").save(src / "moving.webp", save_all=True, append_images=frames[1:],
                                  duration=100)
    frames[0].save(src / "moving.gif", save_all=True, append_images=frames[1:], duration=100)
    save_png(src / "plain.png")
    out = tmp_path / "out"
    assert main(correct(src, "--model", model, "-o", out)) == 1
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in strict_json(out / "angles.json")}
    assert rows["pages.tiff"]["action"] == "failed" and "3 frames" in rows["pages.tiff"]["error"]
    assert rows["moving.webp"]["action"] == "failed" and "3 frames" in rows["moving.webp"]["error"]
    assert rows["moving.gif"]["action"] == "skipped" and "GIF" in rows["moving.gif"]["error"]
    assert rows["plain.png"]["action"] == "rotated"
    assert not (out / "pages.tiff").exists() and not (out / "moving.webp").exists()


def test_item4_a_cmyk_jpeg_is_predicted_like_its_rgb_twin_and_stays_cmyk(model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rgb = Image.fromarray(rotate_image(digit(112), 35.0)).convert("RGB")
    rgb.save(src / "rgb.jpg", quality=95)
    rgb.convert("CMYK").save(src / "cmyk.jpg", quality=95)
    out = tmp_path / "out"
    assert main(correct(src, "--model", model, "-o", out)) == 0
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in strict_json(out / "angles.json")}
    diff = (rows["cmyk.jpg"]["angle"] - rows["rgb.jpg"]["angle"] + 180) % 360 - 180
    assert abs(diff) < 3, rows
    with Image.open(out / "cmyk.jpg") as written:
        assert written.mode == "CMYK"


class _FixedAngle:
    """A real predictor that always answers one angle."""

    def __init__(self, spec, angle):
        self.spec, self.angle = spec, angle

    def predict(self, batch):
        return np.full(len(batch), self.angle)


def test_item3_an_expanded_canvas_over_the_pixel_limit_fails_that_file_only(model, tmp_path):
    line = np.full((1, 1_000_000), 255, np.uint8)
    save_png(tmp_path / "in" / "line.png", line)
    save_png(tmp_path / "in" / "ok.png")
    predictor = _FixedAngle(load_predictor(model).spec, 45.0)
    rows = correct_paths([tmp_path / "in"], predictor, tmp_path / "out", CorrectOptions(canvas="expand"))
    by_name = {r.file.rsplit("/", 1)[-1]: r for r in rows}
    assert by_name["line.png"].action == "failed" and "canvas would be" in by_name["line.png"].error
    assert by_name["ok.png"].action == "rotated"
    assert not (tmp_path / "out" / "line.png").exists()
