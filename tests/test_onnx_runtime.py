"""The ONNX runtime gives the same beliefs as torch: angle, confidence, runner-up."""

import re
import shutil

import numpy as np
import pytest
import torch

from upright.data.samples import load_samples
from upright.geometry import rotate_batch

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported_mnist(tmp_path_factory):
    from upright.predictors import export_onnx
    from upright.shipped import shipped_model

    folder = tmp_path_factory.mktemp("mnist") / "exported"
    assert export_onnx("mnist", folder) == folder / "model.onnx"
    for name in ("model.json", "model.safetensors"):  # a model folder of its own
        assert (folder / name).read_bytes() == (shipped_model("mnist") / name).read_bytes()
    return folder


def _digits_blank_and_noise() -> np.ndarray:
    samples = load_samples("mnist")
    keep = ~np.isin(samples.groups, [0, 1, 6, 8])
    digits = torch.from_numpy(samples.images[keep][:96]).float()[:, None] / 255
    angles = torch.linspace(-175, 175, len(digits))
    turned = rotate_batch(digits, angles)
    rng = np.random.default_rng(0)
    blank = np.full((4, 1, 28, 28), 0.3, np.float32)
    noise = rng.random((8, 1, 28, 28), dtype=np.float32)
    return np.concatenate([turned.numpy(), blank, noise]).astype(np.float32)


def test_onnx_beliefs_equal_torchs_on_digits_blank_and_noise(exported_mnist):
    from upright.predictors import load_predictor

    x = _digits_blank_and_noise()
    on_torch = load_predictor(exported_mnist, "torch").predict_belief(x)
    on_onnx = load_predictor(exported_mnist, "onnx").predict_belief(x)
    turn = np.abs((on_torch.angle - on_onnx.angle + 180) % 360 - 180)
    assert turn.max() < 0.01
    np.testing.assert_allclose(on_onnx.confidence, on_torch.confidence, atol=1e-4)
    np.testing.assert_array_equal(np.isnan(on_onnx.second_angle), np.isnan(on_torch.second_angle))
    np.testing.assert_allclose(on_onnx.second_mass, on_torch.second_mass, atol=1e-4)
    # The beliefs say something: most digits sure, blank pages at 0, noise unsure.
    assert np.mean(on_onnx.confidence[:96] > 0.5) > 0.6
    assert np.all(on_onnx.confidence[96:100] == 0.0)
    assert np.all(on_onnx.confidence[100:] < 0.5)


def test_an_export_with_angles_only_still_predicts_without_a_confidence(exported_mnist, tmp_path):
    """model.onnx files written before the raw output: angles, and no invented confidence."""
    import onnx

    from upright.predictors import load_predictor

    for name in ("model.json", "model.safetensors"):
        shutil.copy(exported_mnist / name, tmp_path / name)
    graph = onnx.load(str(exported_mnist / "model.onnx"))
    raw = [o for o in graph.graph.output if o.name == "raw"]
    graph.graph.output.remove(raw[0])
    onnx.save(graph, str(tmp_path / "model.onnx"))
    x = _digits_blank_and_noise()
    old = load_predictor(tmp_path, "onnx").predict_belief(x)
    assert np.isnan(old.confidence).all()
    np.testing.assert_allclose(old.angle, load_predictor(exported_mnist, "onnx").predict(x), atol=1e-6)


def test_correct_on_the_onnx_runtime_writes_the_same_confidences_and_actions(exported_mnist, tmp_path):
    """Real PNG files through `upright correct --runtime onnx` and `--runtime torch`: the
    same angles, confidences and actions in angles.csv (a blank page kept unsure)."""
    import csv
    from pathlib import Path

    from PIL import Image

    from upright.cli import main

    x = _digits_blank_and_noise()
    files = tmp_path / "in"
    files.mkdir()
    for i in (0, 30, 60, 96, 100):
        Image.fromarray(np.round(x[i, 0] * 255).astype(np.uint8)).save(files / f"{i:03d}.png")
    rows = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / runtime
        assert main(["correct", str(files), "--model", str(exported_mnist), "--runtime", runtime,
                     "-o", str(out), "--no-progress"]) == 0
        with open(out / "angles.csv", newline="") as f:
            rows[runtime] = {Path(r["file"]).name: r for r in csv.DictReader(f)}
    assert rows["onnx"].keys() == rows["torch"].keys() and len(rows["onnx"]) == 5
    for name, on_torch in rows["torch"].items():
        on_onnx = rows["onnx"][name]
        assert on_onnx["confidence"] != "" and on_onnx["action"] == on_torch["action"]
        assert abs(float(on_onnx["confidence"]) - float(on_torch["confidence"])) <= 0.0011  # 3 places
        assert abs((float(on_onnx["angle"]) - float(on_torch["angle"]) + 180) % 360 - 180) < 0.05
    assert rows["onnx"]["096.png"]["action"] == "kept-unsure"
    assert {r["action"] for r in rows["onnx"].values()} >= {"rotated", "kept-unsure"}


def test_a_shipped_model_is_exported_into_a_folder_of_its_own_never_into_the_package(tmp_path, capsys):
    from upright.cli import main
    from upright.shipped import shipped_model

    package = shipped_model("faces")
    before = sorted(p.name for p in package.iterdir())
    assert main(["export", "faces", "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--output" in err[0]
    assert sorted(p.name for p in package.iterdir()) == before  # nothing written there
    # A folder that holds another model's files is not overwritten.
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.json").write_text("{}")
    assert main(["export", "faces", "--format", "onnx", "-o", str(other)]) == 2
    assert (other / "model.json").read_text() == "{}" and not (other / "model.onnx").exists()
    # An empty one gets a working model folder.
    out = tmp_path / "faces-onnx"
    assert main(["export", "faces", "--format", "onnx", "-o", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"model.json", "model.safetensors", "model.onnx"}


def test_the_onnx_runtime_on_a_shipped_model_says_the_export_that_works(tmp_path):
    """The hint is a command that runs: a shipped model is exported into a folder of its own."""
    import shlex

    from upright.cli import main
    from upright.predictors import load_predictor

    with pytest.raises(Exception, match=r"run `upright export faces --format onnx -o DIR` first, "
                                        r"then use --model DIR") as raised:
        load_predictor("faces", runtime="onnx")
    command = re.search(r"`upright (.*?)`", str(raised.value)).group(1).replace("DIR", str(tmp_path / "m"))
    assert main(shlex.split(command)) == 0
    assert load_predictor(tmp_path / "m", runtime="onnx").spec.height == 64
