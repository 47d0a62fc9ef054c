import csv
import hashlib

import numpy as np
import pytest
from PIL import Image

from upright.cli import main
from upright.data.rotated import protocol_angles
from upright.experiments import load_run_config, prepare_data
from upright.geometry import rotate_image


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def digit_files(tiny_run, tmp_path):
    """Turned test images of the tiny run as PNG and JPEG files, one upscaled, in a nested folder."""
    _, splits = prepare_data(load_run_config(tiny_run))
    folder = tmp_path / "inputs"
    (folder / "nested").mkdir(parents=True)
    angles = protocol_angles(np.arange(6), 1, seed=11)[:, 0]
    paths = []
    for i, angle in enumerate(angles):
        image = rotate_image(splits.test.images[i], float(angle))
        if i == 0:
            image = np.array(Image.fromarray(image).resize((112, 112), Image.BILINEAR))
        name = f"d{i}.png" if i % 2 == 0 else f"nested/d{i}.jpg"
        Image.fromarray(image).save(folder / name)
        paths.append(folder / name)
    return folder, paths


def test_correct_writes_decodable_files_of_the_input_size(tiny_run, digit_files, tmp_path):
    folder, paths = digit_files
    before = {p: _digest(p) for p in paths}
    out = tmp_path / "out"
    status = main(["correct", str(folder), "--model", str(tiny_run), "-o", str(out)])
    assert status == 0
    for path in paths:
        result = out / path.relative_to(folder)
        with Image.open(result) as written, Image.open(path) as original:
            assert written.size == original.size
            assert written.format == original.format
            written.load()
    rows = list(csv.DictReader(open(out / "angles.csv")))
    assert len(rows) == len(paths)
    assert {r["file"] for r in rows} == {str(p) for p in paths}
    for r in rows:
        assert -180 <= float(r["angle"]) < 180 and r["action"] == "rotated"
    assert {p: _digest(p) for p in paths} == before  # inputs untouched
    assert not list(out.rglob("*.tmp*"))


def test_correct_rotates_by_minus_the_prediction(tiny_run, tmp_path):
    from upright.correction import correct_paths
    from upright.predictors import load_predictor

    image = np.zeros((28, 28), np.uint8)
    image[4:10, 12:16] = 255  # a bar above the centre
    Image.fromarray(image).save(tmp_path / "bar.png")
    [result] = correct_paths([tmp_path / "bar.png"], load_predictor(tiny_run), tmp_path / "out")
    written = np.asarray(Image.open(tmp_path / "out" / "bar.png"))
    np.testing.assert_allclose(written, rotate_image(image, -result.angle), atol=1)


def test_unreadable_file_is_reported_and_the_exit_status_says_so(tiny_run, tmp_path):
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "bad.png").write_text("not an image")
    status = main(["correct", str(tmp_path / "in"), "--model", str(tiny_run),
                   "-o", str(tmp_path / "out")])
    assert status == 1
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in csv.DictReader(open(tmp_path / "out" / "angles.csv"))}
    assert rows["good.png"]["action"] == "rotated"
    assert rows["bad.png"]["action"] == "failed" and "bad.png" in rows["bad.png"]["error"]
    assert not (tmp_path / "out" / "bad.png").exists()


def test_missing_model_is_one_clear_error(tmp_path, capsys):
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "x.png")
    status = main(["correct", str(tmp_path / "x.png"), "--model", str(tmp_path / "nope"),
                   "-o", str(tmp_path / "out")])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert "nope" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
