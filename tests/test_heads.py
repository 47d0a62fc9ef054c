import numpy as np
import pytest
import torch

from upright.angles import circular_error
from upright.models.heads import HEADS

FEATURES = 12


@pytest.fixture(params=sorted(HEADS))
def head(request):
    torch.manual_seed(0)
    return HEADS[request.param](FEATURES)


def test_output_shape(head):
    raw = head(torch.randn(5, FEATURES))
    assert raw.shape == (5, head.out_features)


def test_decode_lands_in_half_open_range(head):
    torch.manual_seed(1)
    angles = head.decode(head(torch.randn(256, FEATURES) * 50))
    assert angles.shape == (256,)
    assert angles.min() >= -180 and angles.max() < 180


def test_loss_is_near_zero_at_the_true_angle_and_decode_inverts_encode(head):
    angles = torch.tensor([-179.5, -120.0, -3.0, 0.0, 45.5, 90.0, 179.0])
    raw = head.encode(angles)
    assert head.loss(raw, angles).item() < 1e-4
    assert circular_error(head.decode(raw), angles).max().item() < 0.05
    wrong = head.encode(angles + 30.0)
    assert head.loss(wrong, angles).item() > 0.1  # a 30-degree miss costs


def test_every_parameter_gets_a_gradient(head):
    torch.manual_seed(2)
    raw = head(torch.randn(16, FEATURES))
    head.loss(raw, torch.rand(16) * 360 - 180).backward()
    for name, param in head.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("name", ["unitvec", "bins"])
def test_circular_heads_see_179_5_and_minus_179_5_as_one_degree_apart(name):
    head = HEADS[name](FEATURES)
    pred = head.encode(torch.tensor([179.5]))
    err = circular_error(head.decode(pred), torch.tensor([-179.5])).item()
    assert err == pytest.approx(1.0, abs=0.05)
    # The loss agrees: across the seam it equals the loss of a 1-degree miss elsewhere.
    across = head.loss(pred, torch.tensor([-179.5])).item()
    elsewhere = head.loss(head.encode(torch.tensor([0.5])), torch.tensor([-0.5])).item()
    assert across == pytest.approx(elsewhere, rel=1e-3)
    assert across < head.loss(head.encode(torch.tensor([10.0])), torch.tensor([0.0])).item()


def test_published_heads_are_not_continuous_at_the_seam():
    head = HEADS["softsign180"](FEATURES)
    pred = head.encode(torch.tensor([179.5]))
    assert head.loss(pred, torch.tensor([-179.5])).item() > 300  # Huber of a 359-degree miss


def test_sigmoid360_maps_labels_both_ways():
    head = HEADS["sigmoid360"](FEATURES)
    angles = torch.tensor([-180.0, -90.0, -0.5, 0.0, 90.0, 179.0])
    np.testing.assert_allclose(head.target(angles).numpy(), [180.0, 270.0, 359.5, 0.0, 90.0, 179.0])
    raw = torch.tensor([[0.0], [90.0], [180.0], [270.0], [359.5]])
    np.testing.assert_allclose(head.decode(raw).numpy(), [0.0, 90.0, -180.0, -90.0, -0.5])
    # The activation spans exactly [0, 360).
    out = head.activation(torch.tensor([-50.0, 0.0, 50.0]))
    np.testing.assert_allclose(out.numpy(), [0.0, 180.0, 360.0], atol=1e-3)


def test_bins_decode_is_continuous_between_bin_centres():
    head = HEADS["bins"](FEATURES, bins=36, sigma=10.0)
    for angle in (-177.0, -3.3, 12.5, 171.0):
        got = head.decode(head.encode(torch.tensor([angle]))).item()
        assert abs(got - angle) < 0.5


@pytest.mark.parametrize("backbone", ["compact", "seed_mnist"])
def test_an_inference_copy_folds_batchnorm_and_predicts_the_same(backbone):
    from torch import nn

    from upright.models.model import AngleModel, ChannelsLastFlatten, ConvReLU, ModelSpec, for_inference

    torch.manual_seed(0)
    model = AngleModel(ModelSpec(backbone=backbone, head="bins", height=28, width=28)).train()
    x = torch.rand(64, 1, 28, 28)
    for _ in range(3):  # running statistics away from their start
        model(x)
    fast = for_inference(model)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), fast(x), atol=1e-4)
    kinds = {type(m) for m in fast.modules()}
    assert nn.BatchNorm2d not in kinds and nn.MaxPool2d not in kinds
    # every ReLU after a convolution fused into it, the flatten a channels-last view
    assert nn.ReLU in kinds and nn.Flatten not in kinds  # (the dense layers' ReLUs remain)
    convs = [m for m in fast.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == sum(isinstance(m, ConvReLU) for m in fast.modules())
    assert sum(isinstance(m, ChannelsLastFlatten) for m in fast.modules()) == 1
    with torch.enable_grad():  # where a gradient is wanted, the unfused ops: the same numbers
        assert torch.allclose(model(x), fast(x), atol=1e-4)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == (backbone == "compact")
    assert any(isinstance(m, nn.MaxPool2d) for m in model.modules()) == (backbone == "seed_mnist")


@pytest.mark.parametrize("shape", [(3, 16, 24, 24), (2, 8, 13, 9)])
def test_inference_pooling_gives_max_pools_numbers_on_any_layout(shape):
    import torch.nn.functional as F

    from upright.models.model import PairMaxPool

    x = torch.randn(*shape)
    for layout in (torch.contiguous_format, torch.channels_last):
        y = x.contiguous(memory_format=layout)
        assert torch.equal(PairMaxPool()(y), F.max_pool2d(y, 2))


def test_an_inference_copy_runs_large_cpu_batches_in_cache_sized_chunks(monkeypatch):
    from upright.models import model as model_module
    from upright.models.model import AngleModel, CacheSizedChunks, ModelSpec, for_inference

    torch.manual_seed(0)
    model = AngleModel(ModelSpec(backbone="compact", head="bins", height=28, width=28)).eval()
    # compact at 28x28: the first stage's 32 channels of 28x28 floats are the largest output
    assert model_module.largest_activation_bytes(model.backbone, 1, 28, 28) == 32 * 28 * 28 * 4
    monkeypatch.setattr(model_module, "CHUNK_ACTIVATION_BYTES", 32 * 28 * 28 * 4 * 7)
    fast = for_inference(model)
    assert isinstance(fast.backbone, CacheSizedChunks) and fast.backbone.images == 7
    seen = []
    fast.backbone.backbone.register_forward_hook(lambda _m, inputs, _o: seen.append(len(inputs[0])))
    x = torch.rand(30, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(x), fast(x), atol=1e-4)
    assert seen == [7, 7, 7, 7, 2]
