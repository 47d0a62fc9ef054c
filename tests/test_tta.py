import numpy as np
import torch

from upright.angles import circular_difference
from upright.geometry import rotate_batch
from upright.models.model import AngleModel, ModelSpec


def test_quarter_turn_matches_our_rotation_convention():
    x = torch.rand(3, 1, 9, 9)
    np.testing.assert_allclose(torch.rot90(x, 1, dims=(2, 3)).numpy(),
                               rotate_batch(x, torch.full((3,), 90.0), centre="image").numpy(), atol=1e-5)


def test_tta_prediction_on_a_turned_image_is_the_original_plus_90():
    # unitvec decodes continuously (an untrained bins head's flat output would flip its
    # argmax on float noise between batch orders).
    torch.manual_seed(0)
    model = AngleModel(ModelSpec(backbone="compact", head="unitvec")).eval()
    x = torch.rand(6, 1, 28, 28)
    base = model.predict_angles(x, tta=True)
    for k in (1, 2, 3):
        turned = model.predict_angles(torch.rot90(x, k, dims=(2, 3)), tta=True)
        diff = circular_difference(turned - 90.0 * k, base)
        assert diff.abs().max().item() < 1e-2


def test_bf16_and_fp32_predictions_agree():
    torch.manual_seed(1)
    model = AngleModel(ModelSpec(backbone="compact", head="unitvec")).eval()
    x = torch.rand(32, 1, 28, 28)
    fp32 = model.predict_angles(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model.predict_angles(x)
    assert circular_difference(bf16.float(), fp32).abs().median().item() < 1.0


def test_tta_of_a_distribution_head_is_the_angle_its_beliefs_report():
    """--tta on a model with a distribution: the peak of its four quarter-turn views' mean
    distribution, the same angle every belief reports, and a turned image's answer turns."""
    from upright import checkpoint
    from upright.data.samples import load_samples
    from upright.models.model import for_inference
    from upright.shipped import shipped_model

    model = for_inference(checkpoint.load(shipped_model("mnist"))[0])
    samples = load_samples("mnist")
    digits = torch.from_numpy(samples.images[np.isin(samples.groups, [2, 3, 4, 5, 7, 9])][:32])
    x = rotate_batch(digits.float()[:, None] / 255, torch.linspace(-150, 150, 32))
    tta = model.predict_angles(x, tta=True)
    np.testing.assert_allclose(tta.numpy(), model.predict_belief(x, 0.5).angle, atol=1e-4)
    turned = model.predict_angles(torch.rot90(x, 1, dims=(2, 3)), tta=True)
    assert circular_difference(turned - 90.0, tta).abs().max().item() < 1e-3
