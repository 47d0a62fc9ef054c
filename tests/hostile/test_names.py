"""File names: not UTF-8 (item 7), spreadsheet formulas and forged terminal lines (12)."""

from __future__ import annotations

import csv
import os

from hostile.helpers import correct, save_png, strict_json
from upright.cli import main


def test_item7_a_name_that_is_not_utf8_is_written_the_same_everywhere(model, tmp_path, capsys):
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not valid UTF-8
    save_png(tmp_path / "in" / name)
    (tmp_path / "in" / os.fsdecode(b"bad\xff.png")).write_text("not an image")
    out = tmp_path / "out"
    assert main(correct(tmp_path / "in", "--model", model, "-o", out)) == 1
    assert (out / name).is_file()  # the output keeps the input's bytes
    err = capsys.readouterr().err
    assert "bad\\xff.png" in err
    with open(out / "angles.csv", newline="", encoding="utf-8") as f:
        csv_files = [r["file"] for r in csv.DictReader(f)]
    json_rows = strict_json(out / "angles.json")
    expected = [str(tmp_path / "in" / "bad\\xff.png"), str(tmp_path / "in" / "caf\\xe9.png")]
    assert csv_files == [r["file"] for r in json_rows] == expected
    assert json_rows[0]["error"].startswith(expected[0])
    assert json_rows[1]["output"] == str(out / "caf\\xe9.png")


def test_item12_formula_names_are_neutralised_in_the_csv(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths: the cell starts with the name itself
    for name in ("=1+2.png", "+cmd.png", "-x.png", "@sum.png"):
        save_png(tmp_path / name)
    out = tmp_path / "out"
    assert main(["correct", "--model", model, "-o", "out", "--no-progress", "--",
                 "=1+2.png", "+cmd.png", "-x.png", "@sum.png"]) == 0
    with open(out / "angles.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == ["'=1+2.png", "'+cmd.png", "'-x.png", "'@sum.png"]
    assert all(float(r["angle"]) == float(r["angle"]) for r in rows)  # numbers left as numbers
    # JSON is data, not a spreadsheet: names as they are.
    assert sorted(r["file"] for r in strict_json(out / "angles.json")) == [
        "+cmd.png", "-x.png", "=1+2.png", "@sum.png"]


def test_item12_a_newline_in_a_name_cannot_forge_a_line_of_output(model, tmp_path, capsys):
    forged = "x.png\n0 failed; all good\nerror: y.png"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / forged).write_text("not an image")
    assert main(correct(tmp_path / "in", "--model", model, "-o", tmp_path / "out")) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "x.png\\n0 failed; all good\\nerror: y.png" in captured.err
    assert captured.out.count("\n") == 1 and captured.out.startswith("0 corrected, 1 failed")
