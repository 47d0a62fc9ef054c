import json
import shutil

import numpy as np
import pytest
from PIL import Image

from upright.cli import main
from upright.plots import PLOTS, draw_all
from upright.report import write_report
from upright.runs import RunFolderError

EXPECTED_SIZES = {  # figure size x 100 dpi
    "learning_curves": (1100, 420),
    "fixed_angles": (1500, 520),
    "errors": (1200, 420),
    "before_after": (1200, 630),
}


def test_every_plot_is_a_real_png(tiny_run):
    paths = draw_all(tiny_run)
    assert set(paths) == set(PLOTS) - {"calibration"}  # its head has no distribution
    for name, path in paths.items():
        with Image.open(path) as image:
            assert image.format == "PNG"
            if name in EXPECTED_SIZES:
                assert image.size == EXPECTED_SIZES[name]
            pixels = np.asarray(image.convert("L"), dtype=np.float32)
        assert pixels.std() > 5, f"{name} looks blank"
        assert (pixels < 128).mean() > 0.005, f"{name} has almost no ink"


def test_report_holds_the_metrics_and_every_image(tiny_run):
    html_path, md_path = write_report(tiny_run)
    html = html_path.read_text()
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    test = metrics["test"]
    assert f"{test['circular_mae']:.2f}" in html
    assert f"{test['linear_mae']:.2f}" in html
    assert f"{test['within_5']:.1%}" in html
    drawn = set(PLOTS) - {"calibration"}  # the tiny run's head has no distribution
    assert html.count("data:image/png;base64,") == len(drawn)
    assert "src='plots/" not in html  # self-contained
    md = md_path.read_text()
    for name in drawn:
        assert f"(plots/{name}.png)" in md
    assert f"{test['circular_mae']:.2f}" in md


def test_run_folder_without_log_names_what_is_missing(tiny_run, tmp_path, capsys):
    copy = tmp_path / "nolog"
    shutil.copytree(tiny_run, copy)
    (copy / "metrics.csv").unlink()
    with pytest.raises(RunFolderError, match="metrics.csv: missing"):
        draw_all(copy)
    assert main(["report", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "metrics.csv" in err and len(err.strip().splitlines()) == 1


def test_training_writes_the_report_by_default(tiny_run):
    assert (tiny_run / "report.html").is_file() and (tiny_run / "report.md").is_file()
    assert all((tiny_run / "plots" / f"{name}.png").is_file() for name in set(PLOTS) - {"calibration"})


@pytest.mark.parametrize("damage", ["mae is text", "no test results", "a list", "config a list"])
def test_a_damaged_metrics_or_config_file_is_one_line_and_redraws_nothing(tiny_run, tmp_path, capsys, damage):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    if damage == "mae is text":
        metrics["test"]["circular_mae"] = "abc"
    elif damage == "no test results":
        metrics = {}
    elif damage == "a list":
        metrics = []
    (copy / "metrics.json").write_text(json.dumps(metrics))
    if damage == "config a list":
        (copy / "config.json").write_text("[1]")
    before = {p.name: p.stat().st_mtime_ns for p in (copy / "plots").iterdir()}
    report = (copy / "report.html").read_bytes()
    assert main(["report", str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("metrics.json" in err[0] or "config.json" in err[0]), err
    assert {p.name: p.stat().st_mtime_ns for p in (copy / "plots").iterdir()} == before
    assert (copy / "report.html").read_bytes() == report


@pytest.mark.parametrize("edit, words", [({"batch_size": -3}, "batch_size: -3 is out of range"),
                                         ({"dataset": 5}, "dataset: expected text"),
                                         ({"model": [1]}, '"model" is not a JSON object')])
def test_a_config_json_is_checked_as_a_command_line_would_be(tiny_run, tmp_path, edit, words):
    from upright.runs import RunFolder

    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, **edit}))
    with pytest.raises(RunFolderError, match=words):
        RunFolder(copy).config()
