"""Command-line manners: description, --version, usage errors, and bugs that stay bugs."""

from __future__ import annotations

import os

import pytest

import upright
from upright import cli
from upright.cli import main


def test_version_and_a_real_description(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"upright {upright.__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "turn images back upright" in text and "upright correct scans/ -o upright/" in text


def test_correct_without_an_output_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["correct", str(tmp_path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "usage: upright correct" in err and "-o/--output" in err


def test_a_bug_in_upright_keeps_its_traceback_instead_of_a_one_line_message(tmp_path, monkeypatch):
    """A ValueError from upright's own code is not a user error: it must not be dressed as one."""
    def broken(args):
        raise ValueError("an internal invariant failed")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    report = next(a for a in parser._actions if a.dest == "command").choices["report"]
    report.set_defaults(func=broken)
    with pytest.raises(ValueError, match="internal invariant"):
        main(["report", str(tmp_path)])


def test_a_user_error_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "no-such-run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("upright: error: ") and "no-such-run" in err and "\n" not in err


def test_the_command_leaves_its_process_group_before_the_interpreter_exits(tmp_path):
    """A process group left to the interpreter's teardown aborted a finished rank once."""
    import torch.distributed as dist

    from upright.cli import main

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized()
    assert main(["export", str(tmp_path / "no-such-model")]) == 2
    assert not dist.is_initialized()


def test_a_file_where_a_folder_is_needed_is_named_in_plain_words(tmp_path, capsys):
    in_the_way = tmp_path / "notes.txt"
    in_the_way.write_text("mine")
    assert main(["demo", "-o", str(in_the_way)]) == 2  # mkdir on the file itself
    err = capsys.readouterr().err.strip()
    assert err == f"upright: error: {in_the_way}: a file is in the way (a folder is needed there)"
    # a folder to be made below the file: the file in the way is named, not the path below it
    assert main(["train", "--recipe", "mnist-fast", "--dataset", "folder:" + str(tmp_path / "none"),
                 "--runs-dir", str(in_the_way / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"upright: error: {in_the_way}: a file is in the way (a folder is needed there)"
    assert in_the_way.read_text() == "mine"


def test_an_os_error_names_its_path_first():
    import errno

    from upright.cli import os_error_line

    assert os_error_line(FileNotFoundError(errno.ENOENT, "No such file or directory", "a/b.png")) \
        == "a/b.png: no such file or folder"
    assert os_error_line(OSError(errno.EIO, "Input/output error", "c.jpg")) == "c.jpg: input/output error"
    assert os_error_line(OSError("no file named")) == "no file named"


def test_an_os_error_upright_raised_keeps_its_own_words(tmp_path):
    import errno

    from upright.cli import os_error_line

    existing = tmp_path / "model.json"
    existing.write_text("{}")
    hint = "exists (use --overwrite to replace it)"  # fileio's refusal: the way out included
    assert os_error_line(FileExistsError(errno.EEXIST, hint, str(existing))) == f"{existing}: {hint}"
    assert os_error_line(FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(existing))) \
        == f"{existing}: a file is in the way (a folder is needed there)"


def test_correct_fills_the_corners_of_an_image_with_alpha_with_the_alpha_given(tmp_path):
    import numpy as np
    from PIL import Image

    from upright.data.samples import load_samples

    digit = np.asarray(Image.fromarray(load_samples("mnist").images[0]).rotate(40))  # turned: corners to fill
    Image.fromarray(np.dstack([digit] * 3 + [np.full_like(digit, 255)]), "RGBA").save(tmp_path / "a.png")
    for fill, corner in (("#ff000080", (255, 0, 0, 128)), ("white", (255, 255, 255, 0))):
        out = tmp_path / f"out-{fill.strip('#')}"
        assert main(["correct", str(tmp_path / "a.png"), "-o", str(out), "--canvas", "expand",
                     "--fill", fill, "--min-confidence", "0", "--no-progress"]) == 0
        pixels = np.asarray(Image.open(out / "a.png"))
        assert pixels.shape[2] == 4 and tuple(pixels[0, 0]) == corner
