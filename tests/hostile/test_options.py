"""Bad flag values (item 18), model names and folders (13), malformed model configs (15)."""

from __future__ import annotations

import json
import shutil

import pytest

from hostile.helpers import correct, save_png, strict_json
from upright.cli import main


@pytest.mark.parametrize("flag, value", [
    ("--threshold", "-1"), ("--threshold", "nan"), ("--jpeg-quality", "500"), ("--jpeg-quality", "0"),
    ("--workers", "0"), ("--memory-budget", "0"), ("--memory-budget", "x"), ("--batch-size", "0"),
    ("--fill", "inf"), ("--fill", "300"),
])
def test_item18_bad_correct_values_are_argparse_errors_naming_the_flag(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as stop:
        main(["correct", str(tmp_path), "-o", str(tmp_path / "out"), f"{flag}={value}"])
    assert stop.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--image-size", "0"),
                                         ("--eval-batch-size", "-3")])
def test_item18_bad_train_values_are_argparse_errors_naming_the_flag(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--runs-dir", str(tmp_path), f"{flag}={value}"])
    assert stop.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_item13_a_local_folder_named_like_a_shipped_model_does_not_hide_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_png(tmp_path / "mnist" / "a.png")  # photos in a folder that happens to be called mnist
    assert main(correct("mnist", "--model", "mnist", "-o", "out")) == 0
    assert [r["action"] for r in strict_json(tmp_path / "out" / "angles.json")] == ["rotated"]


def test_item13_a_folder_that_is_no_model_says_so(tmp_path, capsys):
    save_png(tmp_path / "a.png")
    (tmp_path / "photos").mkdir()
    assert main(correct(tmp_path / "a.png", "--model", tmp_path / "photos", "-o", tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "photos: not a model folder (no model.json)" in err[0]


MALFORMED = {
    "model is a string": lambda c: c.update(model="compact"),
    "model is a list": lambda c: c.update(model=[1, 2]),
    "negative height": lambda c: c["model"].update(height=-28),
    "zero width": lambda c: c["model"].update(width=0),
    "absurd size": lambda c: c["model"].update(height=10**9, width=10**9),
    "size as text": lambda c: c["model"].update(height="28"),
    "zero channels": lambda c: c["model"].update(channels=0),
    "bins 0": lambda c: c["model"].update(head="bins", head_options={"bins": 0}),
    "bins absurd": lambda c: c["model"].update(head="bins", head_options={"bins": 10**12}),
    "mean too long": lambda c: c["model"].update(mean=[0.0, 0.0, 0.0]),
    "std a number": lambda c: c["model"].update(std=1.0),
    "unknown head option": lambda c: c["model"].update(head_options={"no_such_option": 1}),
    "unknown backbone": lambda c: c["model"].update(backbone="resnet9000"),
    "unknown aspect": lambda c: c["model"].update(aspect="nope"),
    "unknown levels": lambda c: c["model"].update(levels="sideways"),
    "widths of 10^5": lambda c: c["model"]["backbone_options"].update(widths=[100_000] * 3),
}


@pytest.mark.parametrize("damage", sorted(MALFORMED))
def test_item15_a_malformed_model_config_is_one_line_before_any_work(model, tmp_path, capsys, damage):
    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    config = json.loads((folder / "model.json").read_text())
    MALFORMED[damage](config)
    (folder / "model.json").write_text(json.dumps(config))
    save_png(tmp_path / "a.png")
    assert main(correct(tmp_path / "a.png", "--model", folder, "-o", tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("upright: error: ") and "model.json" in err[0], err
    assert not (tmp_path / "out").exists()


def test_item15_a_config_asking_for_a_huge_network_is_refused_from_the_file_header(model, tmp_path):
    """Widths of 10^5 would be a network of 3.6e11 weights (terabytes): the weights file's
    header is read instead, and the message names the tensor that does not fit."""
    import resource

    from upright import checkpoint

    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    config = json.loads((folder / "model.json").read_text())
    config["model"]["backbone_options"]["widths"] = [100_000] * 3
    (folder / "model.json").write_text(json.dumps(config))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(checkpoint.ModelLoadError, match=r"backbone\.features\.0\.weight is \[16, 1, 3, 3\] "
                                                        r"in the file, \[100000, 1, 3, 3\] in the model"):
        checkpoint.load(folder)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200


def test_item15_an_unknown_aspect_fails_export_and_the_api_at_load_too(model, tmp_path, capsys):
    import upright
    from upright.checkpoint import ModelLoadError

    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    config = json.loads((folder / "model.json").read_text())
    config["model"]["aspect"] = "nope"
    (folder / "model.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="model.json: aspect must be one of crop, pad, got 'nope'"):
        upright.load(folder)
    assert main(["export", str(folder), "-o", str(tmp_path / "exported")]) == 2
    assert "aspect must be one of" in capsys.readouterr().err
    assert not (tmp_path / "exported").exists()
