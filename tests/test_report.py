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
