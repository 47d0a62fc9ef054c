"""Training runs: too few images and an existing run name are clear errors, nothing
half-made is left behind (item 17)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from upright.cli import main


def _folder(path, count):
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(path / f"img{i}.png")
    return path


def _train(folder, runs, *extra):
    return main(["train", "--dataset", f"folder:{folder}", "--image-size", "16", "--max-epochs",
                 "1", "--batch-size", "8", "--angles-per-epoch", "1", "--val-angles", "1",
                 "--test-angles", "1", "--suite-angles", "1", "--runs-dir", str(runs),
                 "--name", "r", "--no-progress", "--no-report", *extra])


def test_item17_a_folder_of_two_images_is_one_line_and_makes_no_run(tmp_path, capsys):
    folder = _folder(tmp_path / "two", 2)
    assert _train(folder, tmp_path / "runs") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "usable image(s)" in err and "Traceback" not in err
    assert not (tmp_path / "runs" / "r").exists()


def test_item17_an_existing_run_name_needs_overwrite_and_is_then_replaced_whole(tmp_path, capsys):
    folder = _folder(tmp_path / "imgs", 12)
    runs = tmp_path / "runs"
    assert _train(folder, runs) == 0
    stale = runs / "r" / "report.html"
    stale.write_text("an old report")
    first = (runs / "r" / "model.json").read_bytes()
    capsys.readouterr()
    assert _train(folder, runs) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (runs / "r" / "model.json").read_bytes() == first  # untouched
    assert _train(folder, runs, "--overwrite") == 0
    assert not stale.exists()  # the old run went as a whole: nothing stale beside the new one
    assert json.loads((runs / "r" / "model.json").read_text())["made_by"]["command"]


def test_item17_overwrite_never_removes_a_folder_that_is_not_a_run(tmp_path, capsys):
    folder = _folder(tmp_path / "imgs", 12)
    (tmp_path / "runs" / "r").mkdir(parents=True)
    (tmp_path / "runs" / "r" / "thesis.tex").write_text("precious")
    assert _train(folder, tmp_path / "runs", "--overwrite") == 2
    assert "not a run folder" in capsys.readouterr().err
    assert (tmp_path / "runs" / "r" / "thesis.tex").read_text() == "precious"


def test_a_retrain_that_fails_or_is_stopped_leaves_the_earlier_run_as_it_was(tmp_path, capsys, monkeypatch):
    """The new run is made beside the old one and takes its place only when whole."""
    import pytest

    from upright import experiments

    folder = _folder(tmp_path / "imgs", 12)
    runs = tmp_path / "runs"
    assert _train(folder, runs) == 0
    before = {p.name: p.read_bytes() for p in (runs / "r").iterdir() if p.is_file()}
    # A setting the network refuses (found before the data is read).
    assert _train(folder, runs, "--overwrite", "--head-option", "no_such_option=1") == 2
    assert "no_such_option" in capsys.readouterr().err

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiments, "evaluate", stop)  # Ctrl-C after training, while evaluating
    with pytest.raises(KeyboardInterrupt):
        experiments.train_run(experiments.load_run_config(runs / "r"), runs / "r", progress=False,
                              report=False, overwrite=True)
    assert {p.name: p.read_bytes() for p in (runs / "r").iterdir() if p.is_file()} == before
    assert sorted(p.name for p in runs.iterdir()) == ["r"]  # no staging folder left beside it


def test_overwrite_never_removes_a_folder_holding_more_than_a_run(tmp_path, capsys):
    folder = _folder(tmp_path / "imgs", 12)
    project = tmp_path / "runs" / "r"
    (project / "src").mkdir(parents=True)
    (project / "config.json").write_text("{}")  # a file of the same name is no proof of a run
    (project / "src" / "main.py").write_text("precious")
    assert _train(folder, tmp_path / "runs", "--overwrite") == 2
    assert "holds files upright did not write (src)" in capsys.readouterr().err
    assert (project / "src" / "main.py").read_text() == "precious"


def test_ctrl_c_or_sigterm_during_training_is_an_interruption_not_success(tmp_path, capsys, monkeypatch):
    """Lightning turns Ctrl-C into exit(1) and SIGTERM into exit(0), silently: a scheduler
    would have recorded the stopped run as a success."""
    import os
    import signal

    from upright import training

    folder = _folder(tmp_path / "imgs", 12)
    original = training.AngleModule.training_step
    for how in ("sigterm", "ctrl-c"):
        def step(self, batch, index, how=how):
            if index == 0:
                if how == "sigterm":
                    os.kill(os.getpid(), signal.SIGTERM)
                else:
                    raise KeyboardInterrupt
            return original(self, batch, index)

        monkeypatch.setattr(training.AngleModule, "training_step", step)
        assert _train(folder, tmp_path / "runs", "--max-epochs", "3") == 130, how
        assert capsys.readouterr().err.strip().splitlines()[-1] == "upright: interrupted"
        assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_a_folder_run_is_evaluated_from_anywhere_but_not_on_a_folder_that_changed(tmp_path, monkeypatch):
    import pytest

    from upright.errors import DatasetError
    from upright.experiments import evaluate_run

    monkeypatch.chdir(tmp_path)
    _folder(tmp_path / "imgs", 12)
    assert main(["train", "--dataset", "folder:imgs", "--image-size", "16", "--max-epochs", "1",
                 "--batch-size", "8", "--angles-per-epoch", "1", "--val-angles", "1", "--test-angles",
                 "1", "--suite-angles", "1", "--runs-dir", "runs", "--name", "r", "--no-progress",
                 "--no-report"]) == 0
    config = json.loads((tmp_path / "runs" / "r" / "config.json").read_text())
    assert config["dataset"] == f"folder:{tmp_path / 'imgs'}"  # whole, not as typed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    metrics = json.loads((tmp_path / "runs" / "r" / "metrics.json").read_text())
    assert evaluate_run(tmp_path / "runs" / "r", progress=False, report=False)["test"] == metrics["test"]
    metrics = json.loads((tmp_path / "runs" / "r" / "metrics.json").read_text())
    rng = np.random.default_rng(1)
    for i in range(6):  # more images: the seeded split moves, the old test set is gone
        pixels = rng.integers(0, 255, (24, 24), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "imgs" / f"new{i}.png")
    with pytest.raises(DatasetError, match="the data changed since"):
        evaluate_run(tmp_path / "runs" / "r", progress=False, report=False)
    assert json.loads((tmp_path / "runs" / "r" / "metrics.json").read_text()) == metrics  # untouched


def test_sigterm_while_evaluating_is_an_interruption_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    """Lightning handles SIGTERM only while it fits; the command handles it before and after."""
    import os
    import signal

    from upright import experiments

    folder = _folder(tmp_path / "imgs", 12)

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(experiments, "evaluate", terminated)
    assert _train(folder, tmp_path / "runs") == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "upright: interrupted"
    assert not list((tmp_path / "runs").iterdir())  # neither the run nor its staging folder


def test_evaluate_refuses_a_folder_whose_test_files_were_swapped_for_others(tmp_path):
    import pytest

    from upright.errors import DatasetError
    from upright.experiments import evaluate_run

    folder = _folder(tmp_path / "imgs", 12)
    assert _train(folder, tmp_path / "runs") == 0
    model_json = json.loads((tmp_path / "runs" / "r" / "model.json").read_text())
    assert len(model_json["data"]["test_sha256"]) == 64
    metrics = (tmp_path / "runs" / "r" / "metrics.json").read_bytes()
    rng = np.random.default_rng(7)
    for path in sorted(folder.iterdir()):  # the same names and counts, other pictures
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(path)
    with pytest.raises(DatasetError, match="the test images are not the ones the run was tested on"):
        evaluate_run(tmp_path / "runs" / "r", progress=False, report=False)
    assert (tmp_path / "runs" / "r" / "metrics.json").read_bytes() == metrics  # untouched
