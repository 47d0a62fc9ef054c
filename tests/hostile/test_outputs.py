"""Outputs are never lost or clobbered (items 2, 11), follow the umask (8), need a writable
folder (9) and may have names up to the 255-byte limit (10); interrupts and killed runs
leave a report and nothing half-made (14)."""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hostile.helpers import correct, digit, report_rows, save_png, strict_json
from upright import fileio
from upright.cli import main


def test_item2_the_same_file_twice_or_a_file_and_its_folder_is_refused_up_front(model, tmp_path, capsys):
    a = save_png(tmp_path / "in" / "a.png")
    for args in ([a, a], [tmp_path / "in", a], [tmp_path / "in", tmp_path / "in" / ".." / "in"]):
        out = tmp_path / "out"
        assert main(correct(*args, "--model", model, "-o", out)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "given twice" in err[0]
        assert not out.exists()


def test_item2_two_inputs_onto_one_output_name_are_refused_up_front(model, tmp_path, capsys):
    save_png(tmp_path / "one" / "a.png")
    save_png(tmp_path / "two" / "a.png", digit(seed=3))
    out = tmp_path / "out"
    assert main(correct(tmp_path / "one", tmp_path / "two", "--model", model, "-o", out)) == 2
    err = capsys.readouterr().err
    assert "would be written there" in err and "one/a.png" in err and "two/a.png" in err
    assert not out.exists()


def test_item2_racing_writers_of_one_name_exactly_one_wins(tmp_path):
    target = tmp_path / "out.png"
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        start.wait()
        try:
            fileio.write_bytes(target, f"writer {n}".encode(), overwrite=False)
            outcomes.append(f"writer {n}")
        except FileExistsError:
            outcomes.append("refused")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o != "refused"]
    assert len(winners) == 1 and len(outcomes) == 8
    assert target.read_bytes().decode() == winners[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary left


def test_item14_an_existing_output_is_kept_without_decoding_its_input(model, tmp_path, capsys):
    save_png(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.png").write_bytes(b"not an image: decoding it would fail")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"someone else's file")
    (out / "b.png").write_bytes(b"an earlier run's output")
    assert main(correct(tmp_path / "in", "--model", model, "-o", out)) == 0
    assert (out / "a.png").read_bytes() == b"someone else's file"
    rows = strict_json(out / "angles.json")
    assert [(r["action"], Path(r["output"]).name) for r in rows] == [("kept", "a.png"), ("kept", "b.png")]
    assert "2 kept, 0 failed" in capsys.readouterr().out


def test_item11_a_second_run_keeps_the_first_report_and_numbers_its_own(model, tmp_path, capsys):
    save_png(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert main(correct(tmp_path / "in", "--model", model, "-o", out)) == 0
    first = (out / "angles.csv").read_bytes()
    assert main(correct(tmp_path / "in", "--model", model, "-o", out)) == 0
    assert (out / "angles.csv").read_bytes() == first
    assert "angles-2.csv" in capsys.readouterr().out
    assert [r["action"] for r in report_rows(out, "angles-2")[1]] == ["kept"]
    assert main(correct(tmp_path / "in", "--model", model, "-o", out, "--overwrite")) == 0
    assert str(out / "angles.csv") in capsys.readouterr().out  # --overwrite: replaced in place
    assert not (out / "angles-3.csv").exists()


def test_item11_a_dry_run_still_keeps_its_report_out_of_the_input_folder(model, tmp_path, capsys):
    save_png(tmp_path / "in" / "a.png")
    assert main(correct(tmp_path / "in", "--model", model, "-o", tmp_path / "in" / "report",
                        "--dry-run")) == 2
    assert "--allow-input-folder" in capsys.readouterr().err
    assert not (tmp_path / "in" / "report").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_item8_outputs_and_reports_follow_the_umask(model, tmp_path, umask):
    save_png(tmp_path / "in" / "a.png")
    save_png(tmp_path / "in" / "b.png", digit(seed=2))
    out = tmp_path / "out"
    old = os.umask(umask)
    try:
        assert main(correct(tmp_path / "in", "--model", model, "-o", out, "--threshold", "181")) == 0
        save_png(tmp_path / "in2" / "c.png")
        assert main(correct(tmp_path / "in2", "--model", model, "-o", out / "more")) == 0
    finally:
        os.umask(old)
    for name in ("a.png", "b.png", "angles.csv", "angles.json", "more/c.png", "more/angles.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~umask, name


def test_item9_an_output_folder_that_cannot_be_made_fails_before_any_work(model, tmp_path, capsys):
    save_png(tmp_path / "in" / "a.png")
    (tmp_path / "taken").write_text("a file where the output folder should be")
    assert main(correct(tmp_path / "in", "--model", model, "-o", tmp_path / "taken" / "out")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write there" in err[0] and "taken" in err[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_item9_a_read_only_output_folder_fails_before_any_work(model, tmp_path, capsys):
    save_png(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert main(correct(tmp_path / "in", "--model", model, "-o", out)) == 2
    finally:
        out.chmod(0o755)
    assert "cannot write there" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_item9_a_subfolder_that_cannot_be_made_fails_that_file_only(model, tmp_path):
    save_png(tmp_path / "in" / "sub" / "a.png")
    save_png(tmp_path / "in" / "b.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_text("a file where a folder is needed")
    assert main(correct(tmp_path / "in", "--model", model, "-o", out)) == 1
    rows = {r["file"].rsplit("/in/", 1)[1]: r for r in strict_json(out / "angles.json")}
    assert rows["b.png"]["action"] == "rotated"
    assert rows["sub/a.png"]["action"] == "failed" and "sub" in rows["sub/a.png"]["error"]


def test_item10_a_name_of_255_bytes_is_written(model, tmp_path):
    name = "é" * 125 + "x.png"  # 250 + 5 = 255 bytes
    assert len(name.encode()) == 255
    save_png(tmp_path / "in" / name)
    out = tmp_path / "out"
    assert main(correct(tmp_path / "in", "--model", model, "-o", out)) == 0
    assert (out / name).is_file()
    assert [p.name for p in out.iterdir() if fileio.is_temp_name(p.name)] == []


def test_item14_temporary_files_a_killed_run_left_are_removed_and_live_ones_kept(model, tmp_path, capsys):
    save_png(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".upright-ab12cd34.tmp.png"  # as a SIGKILLed writer leaves it
    stale.write_bytes(b"half an image")
    os.utime(stale, (time.time() - 3600,) * 2)
    live = out / ".upright-ef56gh78.tmp.png"  # another process is writing this one
    live.write_bytes(b"being written")
    os.utime(live, (time.time() - 3600,) * 2)
    holder = os.open(live, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        assert main(correct(tmp_path / "in", "--model", model, "-o", out)) == 0
    finally:
        os.close(holder)
    assert not stale.exists() and live.exists()
    assert "removed 1 temporary file" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [live.name, "a.png", "angles.csv", "angles.json"]


@pytest.mark.slow  # a child process and 400 files: 5 s; CI runs it
def test_item14_sigterm_stops_promptly_and_writes_the_report_of_what_was_done(model, tmp_path):
    src = tmp_path / "in"
    for i in range(400):
        save_png(src / f"{i:03d}.png", np.kron(digit(28, seed=i), np.ones((12, 12), np.uint8)))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    child = subprocess.Popen([sys.executable, "-m", "upright", *correct(src, "--model", model, "-o", out,
                                                                         "--batch-size", "4")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not any(out.glob("*.png")) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    rows = strict_json(out / "angles.json")
    written = sorted(p.name for p in out.glob("*.png"))
    assert 0 < len(rows) < 400  # stopped before the end, and said what was done
    done = ("rotated", "kept-unsure", "kept-small")  # every action that writes an output
    assert sorted(Path(r["output"]).name for r in rows if r["action"] in done) == written
    assert not [p for p in out.iterdir() if p.name.startswith(".upright-")]  # no temporary left
    # The rerun finishes the rest and keeps what the first run wrote.
    assert main(correct(src, "--model", model, "-o", out)) == 0
    second = strict_json(out / "angles-2.json")
    assert sum(r["action"] == "kept" for r in second) == len(written)
    assert sum(r["action"] in done for r in second) == 400 - len(written)


@pytest.mark.parametrize("obstacle", ["folder", "broken link", "the input itself"])
def test_an_output_name_taken_by_something_that_is_no_output_fails_that_file(model, tmp_path, obstacle):
    """Only an existing file can be an earlier run's output to keep; a folder, a broken link
    or (with the output folder the input's own) the input itself is a failure, not "kept"."""
    save_png(tmp_path / "in" / "a.png")
    save_png(tmp_path / "in" / "b.png")
    out = tmp_path / "in" if obstacle == "the input itself" else tmp_path / "out"
    if obstacle == "folder":
        (out / "a.png").mkdir(parents=True)
    elif obstacle == "broken link":
        out.mkdir()
        (out / "a.png").symlink_to(tmp_path / "nowhere.png")
    extra = ["--allow-input-folder"] if obstacle == "the input itself" else []
    assert main(correct(tmp_path / "in" / "a.png", "--model", model, "-o", out, *extra)) == 1
    row = strict_json(out / "angles.json")[0]
    assert row["action"] == "failed"
    assert row["error"].startswith(str(out / "a.png") + ": ")
    assert {"folder": "a folder is in the way", "broken link": "a broken link is in the way",
            "the input itself": "is an input file"}[obstacle] in row["error"]
    if obstacle == "folder":  # with --overwrite the message names the output, not a temporary file
        assert main(correct(tmp_path / "in" / "a.png", "--model", model, "-o", out, "--overwrite")) == 1
        row = strict_json(out / "angles.json")[0]
        assert row["error"] == f"{out / 'a.png'}: a folder is in the way of this output"
    assert not [p for p in out.rglob("*") if fileio.is_temp_name(p.name)]
