"""The grey-level rule in front of the network: exact under inversion, in every path."""

import numpy as np
import pytest
import torch
from PIL import Image

from upright import prepare
from upright.models.model import AngleModel, ModelSpec


def _digits(n: int = 8) -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 6:22, 12:16] = torch.rand(n, 1, 16, 4) * 0.5 + 0.5
    x[:, :, 6:9, 8:20] = 0.9
    return x


def test_polarity_keeps_light_on_dark_and_turns_negatives_back_exactly():
    x = _digits()
    mask = torch.ones(1, 1, 28, 28)
    torch.testing.assert_close(prepare.canonical_polarity(x, mask), x)
    torch.testing.assert_close(prepare.canonical_polarity(1 - x, mask), x, atol=1e-6, rtol=0)


def test_autocontrast_makes_a_faded_scan_look_like_a_clean_digit():
    x = _digits()
    mask = torch.ones(1, 1, 28, 28)
    scan = 0.85 - 0.5 * x  # grey ink on light grey paper
    clean = prepare.autocontrast(x, mask)
    out = prepare.autocontrast(scan, mask)
    assert float(out[:, :, 0, 0].max()) == 0.0  # the paper is black now
    assert float(out.amax(dim=(1, 2, 3)).min()) == pytest.approx(1.0)  # the ink white
    torch.testing.assert_close(out, clean, atol=0.02, rtol=0)
    blank = prepare.autocontrast(torch.full((2, 1, 28, 28), 0.7), mask)
    assert torch.isfinite(blank).all() and float(blank.abs().max()) == 0.0


@pytest.mark.parametrize("levels", ["polarity", "autocontrast"])
def test_a_model_predicts_the_same_angle_for_an_image_and_its_negative(levels):
    torch.manual_seed(0)
    model = AngleModel(ModelSpec(backbone="compact", head="unitvec", levels=levels)).eval()
    x = _digits()
    torch.testing.assert_close(model.predict_angles(1 - x), model.predict_angles(x), atol=1e-3, rtol=0)
    raw = AngleModel(ModelSpec(backbone="compact", head="unitvec", levels="raw")).eval()
    raw.load_state_dict(model.state_dict())
    assert not torch.allclose(raw.predict_angles(1 - x), raw.predict_angles(x), atol=1e-1)


def test_unknown_levels_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown levels 'sepia'"):
        AngleModel(ModelSpec(levels="sepia"))


def test_the_rule_is_the_same_function_in_training_evaluation_correction_and_onnx(tmp_path, monkeypatch):
    """One function, called by the model itself: a spy in its place sees every path."""
    from upright import checkpoint
    from upright.config import TrainConfig
    from upright.correction import CorrectOptions, correct_paths
    from upright.data.rotated import RotatedSet
    from upright.evaluation import predict_set
    from upright.predictors import TorchPredictor
    from upright.training import AngleModule

    calls: list[str] = []
    original = prepare.LEVELS["polarity"]

    def spy(images, mask):
        calls.append(path)
        return original(images, mask)

    monkeypatch.setitem(prepare.LEVELS, "polarity", spy)
    spec = ModelSpec(backbone="compact", head="bins", levels="polarity",
                     backbone_options={"widths": [8, 8], "dense": 16})
    model = AngleModel(spec)
    path = "training"
    module = AngleModule(model, TrainConfig(model=spec))
    module.log = lambda *a, **k: None
    x = (_digits(4) * 255).to(torch.uint8)[:, 0]
    loss = module.training_step((x, torch.tensor([10.0, -50.0, 120.0, 179.0])), 0)
    assert torch.isfinite(loss)
    path = "evaluation"
    predict_set(model, RotatedSet(x.numpy(), np.arange(4), np.zeros(4)), 2)
    path = "correction"
    Image.fromarray(255 - x[0].numpy()).save(tmp_path / "scan.png")
    checkpoint.save(tmp_path / "model", model)
    model, _ = checkpoint.load(tmp_path / "model")
    results = correct_paths([tmp_path / "scan.png"], TorchPredictor(model), tmp_path / "out",
                            CorrectOptions(min_confidence=0.0))  # an untrained model is unsure
    assert results[0].action == "rotated"
    assert calls.count("training") == 1 and calls.count("evaluation") == 2 and "correction" in calls


def test_onnx_export_keeps_the_rule(tmp_path):
    pytest.importorskip("onnxruntime")
    from upright import checkpoint
    from upright.predictors import OnnxPredictor, TorchPredictor, export_onnx

    torch.manual_seed(0)
    model = AngleModel(ModelSpec(backbone="compact", head="unitvec", levels="autocontrast"))
    checkpoint.save(tmp_path, model.eval())
    export_onnx(tmp_path)
    onnx = OnnxPredictor(tmp_path)
    x = _digits().numpy()
    torch_angles = TorchPredictor(model).predict(x)
    np.testing.assert_allclose(onnx.predict(0.9 - 0.6 * x), torch_angles, atol=0.05)


def test_the_grey_levels_are_sorted_as_torch_sorts_them_in_every_path():
    """The numpy sort on CPU gives torch's numbers; a traced graph, a gradient or another
    dtype takes torch's own sort."""
    def same(a: torch.Tensor, b: torch.Tensor) -> bool:  # NaN where NaN, equal elsewhere
        return torch.equal(torch.nan_to_num(a.detach().float(), 9.0), torch.nan_to_num(b.float(), 9.0))

    torch.manual_seed(0)
    values = torch.rand(40, 300)
    values[5] = 0.25  # ties
    values[7, :9] = float("nan")
    for v in (values, values.double(), values.bfloat16(), values.clone().requires_grad_()):
        assert same(prepare._sorted_rows(v), v.detach().sort(dim=1).values)
    import warnings

    with warnings.catch_warnings():  # the tracer is what the ONNX export runs; its notice is noise
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(prepare._sorted_rows, values)
    assert "aten::sort" in str(traced.graph)  # torch's op in the graph, not numpy's answer as a constant
    assert same(traced(values.flip(1)), values.sort(dim=1).values)
