"""The folder walk (item 18): very deep trees, symbolic links, temporary files."""

from __future__ import annotations

import os

from hostile.helpers import correct, save_png, strict_json
from upright.cli import main


def _remove_deep(root):
    """rm -r without recursion: shutil.rmtree (and pytest's clean-up of old temporary folders,
    shared with every other test run on the machine) fail on a tree this deep."""
    folders, stack = [], [str(root)]
    while stack:
        folder = stack.pop()
        folders.append(folder)
        for entry in os.scandir(folder):
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            else:
                os.unlink(entry.path)
    for folder in reversed(folders):
        os.rmdir(folder)


def test_item18_a_folder_tree_1100_levels_deep_is_walked_and_mirrored(model, tmp_path):
    deep = tmp_path / "in"
    deep.mkdir()
    for _ in range(1100):  # deeper than Python's recursion limit
        deep = deep / "d"
        deep.mkdir()
    save_png(deep / "a.png")
    out = tmp_path / "out"
    try:
        assert main(correct(tmp_path / "in", "--model", model, "-o", out)) == 0
        [row] = strict_json(out / "angles.json")
        assert row["action"] == "rotated"
        assert (out / deep.relative_to(tmp_path / "in") / "a.png").is_file()
    finally:
        _remove_deep(tmp_path / "in")
        _remove_deep(out)


def test_item18_links_to_folders_and_dangling_links_are_reported_not_skipped(model, tmp_path, capsys):
    src = tmp_path / "in"
    save_png(src / "a.png")
    save_png(tmp_path / "elsewhere" / "b.png")
    os.symlink(tmp_path / "elsewhere", src / "linked")
    os.symlink(tmp_path / "gone.png", src / "dangling.png")
    os.symlink(src, src / "loop")  # a cycle is not walked forever
    out = tmp_path / "out"
    assert main(correct(src, "--model", model, "-o", out)) == 1
    rows = {r["file"].rsplit("/in/", 1)[1]: r for r in strict_json(out / "angles.json")}
    assert rows["a.png"]["action"] == "rotated"
    dangling = rows["dangling.png"]
    assert dangling["action"] == "failed" and "broken symbolic link" in dangling["error"]
    for link in ("linked", "loop"):
        assert rows[link]["action"] == "skipped" and "not followed" in rows[link]["error"]
    captured = capsys.readouterr()
    assert "1 rotated, 2 skipped, 1 failed" in captured.out
    assert captured.err.count("not followed") == 2


def test_item14_temporary_files_of_an_earlier_run_are_not_inputs(model, tmp_path):
    src = tmp_path / "in"
    save_png(src / "a.png")
    save_png(src / ".upright-abc123de.tmp.png")  # left by a killed run
    out = tmp_path / "out"
    assert main(correct(src, "--model", model, "-o", out)) == 0
    assert [r["file"] for r in strict_json(out / "angles.json")] == [str(src / "a.png")]


def test_an_output_folder_inside_the_input_is_not_walked(model, tmp_path):
    src = tmp_path / "in"
    save_png(src / "a.png")
    out = src / "upright"
    args = correct(src, "--model", model, "-o", out, "--allow-input-folder")
    assert main(args) == 0
    assert main(args + ["--overwrite"]) == 0  # the second run does not correct the first's output
    assert [r["file"] for r in strict_json(out / "angles.json")] == [str(src / "a.png")]
