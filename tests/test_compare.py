import json

from support import TINY_RUN
from upright.compare import SEAM_ANGLES, compare
from upright.models.heads import HEADS


def test_tiny_compare_writes_a_row_per_head(tmp_path, glyph_folder):
    heads = sorted(HEADS)
    overrides = {**TINY_RUN, "dataset": f"folder:{glyph_folder}", "max_epochs": 1,
                 "angles_per_epoch": 2, "val_angles": 1, "test_angles": 2, "grid_images": 4}
    result = compare(heads, runs=1, out_dir=tmp_path / "cmp", overrides=overrides,
                     progress=False, report=False)
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert set(saved["heads"]) == set(heads) == set(result["heads"])
    for row in saved["heads"].values():
        assert 0 <= row["test_within_5"]["mean"] <= 1
        assert row["epochs"]["mean"] == 1
        assert set(row["seam_median_error"]) == {str(a) for a in SEAM_ANGLES}
    md = (tmp_path / "cmp" / "compare.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    for head in heads:
        assert sum(line.startswith(f"| {head} |") for line in table) == 4  # 4 tables
    assert "Wrap-around study" in md
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 1000
    # Every run is an ordinary run folder.
    assert (tmp_path / "cmp" / "bins-seed0" / "model.safetensors").is_file()

    # Run again: finished runs are kept (resume), not retrained.
    weights = tmp_path / "cmp" / "unitvec-seed0" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    again = compare(heads, runs=1, out_dir=tmp_path / "cmp", overrides=overrides, progress=False,
                    report=False)
    assert weights.stat().st_mtime_ns == before
    assert again["heads"]["unitvec"]["test_within_5"] == result["heads"]["unitvec"]["test_within_5"]

    # Asked with other settings, the kept runs are not passed off as them: an error before any
    # work, or with overwrite a retrain.
    import pytest

    from upright.errors import UserError

    other = {**overrides, "lr": overrides.get("lr", 1e-3) * 3}
    with pytest.raises(UserError, match=r"unitvec-seed0: trained with other settings \(lr: "):
        compare(["unitvec"], runs=1, out_dir=tmp_path / "cmp", overrides=other, progress=False,
                report=False)
    assert weights.stat().st_mtime_ns == before
    retrained = compare(["unitvec"], runs=1, out_dir=tmp_path / "cmp", overrides=other, progress=False,
                        report=False, overwrite=True)
    assert weights.stat().st_mtime_ns != before
    saved_lr = json.loads((tmp_path / "cmp" / "unitvec-seed0" / "config.json").read_text())["lr"]
    assert saved_lr == other["lr"] and retrained["overrides"]["lr"] == other["lr"]
    with pytest.raises(UserError, match="runs must be 1 or more"):
        compare(["unitvec"], runs=0, out_dir=tmp_path / "cmp0", overrides=overrides, progress=False)
    assert not (tmp_path / "cmp0").exists()


def test_setting_differences_see_what_makes_a_run_and_nothing_else(tmp_path, monkeypatch):
    from upright.compare import setting_differences
    from upright.experiments import whole_dataset_path
    from upright.recipes import make_config

    monkeypatch.chdir(tmp_path)
    config = make_config("mnist-fast", {"dataset": "folder:photos", "lr": 0.01})
    config.dataset = whole_dataset_path(config.dataset)
    saved = config.to_dict()
    assert saved["dataset"] == f"folder:{tmp_path / 'photos'}"  # as a run records it
    assert setting_differences(saved, config) == []
    older = {k: v for k, v in saved.items() if k != "train_jpeg"}  # before the setting existed
    assert setting_differences(older, config) == []
    how_only = {"cache": "off", "grid_images": 3, "eval_batch_size": 7}  # memory, report, speed
    assert setting_differences({**saved, **how_only}, config) == []
    assert setting_differences({**saved, "lr": 0.003}, config) == ["lr: 0.003 there, 0.01 now"]
    model = {**saved["model"], "head": "unitvec"}
    assert setting_differences({**saved, "model": model}, config)[0].startswith("model.head: 'unitvec'")
