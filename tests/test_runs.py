"""The run folder owns its file names and all their reading and writing (issue 20, item 3)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from support import TINY_RUN
from upright import fileio
from upright.recipes import make_config
from upright.runs import RunFolder, RunFolderError

SRC = Path(__file__).resolve().parents[1] / "src" / "upright"
RUN_ONLY_NAMES = (RunFolder.CONFIG, RunFolder.LOG, RunFolder.PREDICTIONS, RunFolder.SAMPLES,
                  RunFolder.REPORT_HTML, RunFolder.REPORT_MD)


def test_no_module_but_the_run_folder_spells_a_run_file_name():
    for module in SRC.rglob("*.py"):
        if module.name == "runs.py":
            continue
        text = module.read_text()
        for name in RUN_ONLY_NAMES:
            assert f'"{name}"' not in text, f"{module.relative_to(SRC)} spells {name}"


@pytest.mark.slow  # a whole training run of its own: 5 s; CI runs it
def test_training_writes_each_file_of_the_run_once(tmp_path, glyph_folder, monkeypatch):
    from upright.experiments import train_run
    from upright.recipes import make_config

    writes: Counter = Counter()
    real = fileio.atomic_path

    def counting(target, overwrite=True):
        writes[Path(target).resolve()] += 1
        return real(target, overwrite)

    monkeypatch.setattr(fileio, "atomic_path", counting)
    config = make_config("mnist-published", {**TINY_RUN, "dataset": f"folder:{glyph_folder}",
                                             "max_epochs": 1})
    run = RunFolder(tmp_path / "run")
    train_run(config, run.path, progress=False)
    written: Counter = Counter()
    for path, n in writes.items():  # the run is written in its staging folder, then moved whole
        first, *rest = path.relative_to(tmp_path.resolve()).parts
        assert first == "run" or first.startswith(".run.upright-training-"), path
        written["/".join(rest)] += n
    for name in (RunFolder.CONFIG, RunFolder.MODEL_INFO, RunFolder.WEIGHTS, RunFolder.METRICS,
                 RunFolder.PREDICTIONS, RunFolder.SAMPLES, RunFolder.REPORT_HTML, "plots/robustness.png"):
        assert written.get(name) == 1, (name, written)
    assert max(written.values()) == 1, written
    # model.json carries the evaluation's figures without a second write.
    assert run.model_info()["metrics"]["test"] == run.metrics()["test"]


def test_evaluation_returns_results_and_writes_nothing(tiny_run, tmp_path):
    from upright import checkpoint
    from upright.experiments import evaluate, prepare_data

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    before = {p: p.stat().st_mtime_ns for p in copy.rglob("*")}
    run = RunFolder(copy)
    model, _ = checkpoint.load(copy)
    config = run.config()
    result = evaluate(model, prepare_data(config)[1], config, progress=False)
    assert {p: p.stat().st_mtime_ns for p in copy.rglob("*")} == before
    saved = run.metrics()
    for part in ("test", "train", "fixed_angles", "per_group", "robustness"):
        assert result.metrics[part] == saved[part]
    assert set(result.predictions) == set(run.predictions())


def test_a_missing_or_damaged_file_is_a_one_line_error_naming_it(tiny_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    run = RunFolder(copy)
    run.file(RunFolder.METRICS).unlink()
    with pytest.raises(RunFolderError, match=r"metrics\.json: missing \(evaluation writes it\)"):
        run.metrics()
    data = run.file(RunFolder.PREDICTIONS).read_bytes()
    run.file(RunFolder.PREDICTIONS).write_bytes(data[: len(data) // 2])
    with pytest.raises(RunFolderError, match=r"predictions\.npz: damaged or truncated"):
        run.predictions()
    run.file(RunFolder.PREDICTIONS).write_text("plain text, no zip")  # numpy would suggest unpickling
    with pytest.raises(RunFolderError, match=r"predictions\.npz: damaged or truncated \(not a zip"):
        run.predictions()
    run.file(RunFolder.CONFIG).write_text("{}")
    with pytest.raises(RunFolderError, match=r"config\.json: empty"):
        run.config()
    with pytest.raises(RunFolderError, match="no such run folder"):
        RunFolder(tmp_path / "nowhere").metrics()


def test_a_run_is_replaced_only_when_asked_whole_and_never_a_folder_holding_anything_else(tmp_path):
    from upright.runs import RunExistsError

    run = RunFolder(tmp_path / "run")
    assert run.check_claim(overwrite=False) is False  # nothing there yet
    staged = run.staging()
    staged.write_config(make_config("mnist-fast"))
    run.publish(staged)
    assert (run.path / RunFolder.CONFIG).is_file() and not staged.path.exists()
    with pytest.raises(RunExistsError, match="pass --overwrite"):
        run.check_claim(overwrite=False)
    (run.path / RunFolder.REPORT_MD).write_text("old report")
    assert run.check_claim(overwrite=True) is True
    newer = run.staging()
    (newer.path / RunFolder.CONFIG).write_text("{}")
    run.publish(newer)
    assert sorted(p.name for p in run.path.iterdir()) == [RunFolder.CONFIG]  # nothing stale beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging or old folder left
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(RunExistsError, match="is not a run folder"):
        RunFolder(other).check_claim(overwrite=True)
    # A config.json alone does not make a folder of someone's work a run.
    (other / RunFolder.CONFIG).write_text("{}")
    (other / "src").mkdir()
    with pytest.raises(RunExistsError, match=r"holds files upright did not write \(holiday\.jpg, src\)"):
        RunFolder(other).check_claim(overwrite=True)
    assert (other / "holiday.jpg").read_bytes() == b"precious"
