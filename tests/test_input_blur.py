"""The input blur: a fixed low-pass in front of the network that hides how an image was
resampled, kept in the spec so a saved model blurs the same way at inference."""

import numpy as np
import pytest
import torch

from conftest import needs_mnist
from upright import checkpoint
from upright.data.mnist import load_mnist
from upright.evaluation import OTHER_RESAMPLERS
from upright.geometry import rotate_image
from upright.models.model import AngleModel, ModelSpec, gaussian_blur, gaussian_taps


@pytest.mark.parametrize("sigma", [0.8, 1.0, 1.5])
def test_taps_are_a_normalised_symmetric_gaussian(sigma):
    taps = gaussian_taps(sigma)
    assert taps.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(taps, taps.flip(0))
    centre = len(taps) // 2
    x = torch.arange(len(taps)) - centre
    assert (taps * x.float() ** 2).sum().item() == pytest.approx(sigma**2, rel=0.03)


def test_zero_sigma_leaves_images_alone_and_flat_images_stay_flat():
    x = torch.rand(3, 2, 12, 10)
    assert torch.equal(gaussian_blur(x, gaussian_taps(0.0)), x)
    flat = torch.full((1, 1, 9, 9), 0.3)
    # Edges are repeated outwards, so a flat image (a face's grey background) keeps its level.
    assert torch.allclose(gaussian_blur(flat, gaussian_taps(1.0)), flat, atol=1e-6)


@needs_mnist
@pytest.mark.parametrize("resampler", sorted(OTHER_RESAMPLERS))
def test_blur_shrinks_the_difference_between_resamplers_more_than_the_shape(resampler):
    # Same digit, same angle, two resamplers, measured against what a 3-degree turn changes:
    # on sharp MNIST strokes the resamplers differ by about half of that; after a 0.8-pixel
    # blur by clearly less (about two thirds of it; the shape survives the blur).
    source = load_mnist()
    digits = source.images[source.is_test][:20]
    taps = gaussian_taps(0.8)

    def share(images: list[np.ndarray], blur: bool) -> float:
        t = [torch.from_numpy(a.astype(np.float32) / 255)[None, None] for a in images]
        if blur:
            t = [gaussian_blur(x, taps) for x in t]
        return ((t[0] - t[1]).norm() / (t[0] - t[2]).norm()).item()

    raw, blurred = [], []
    for digit in digits:
        views = [rotate_image(digit, 37.0), OTHER_RESAMPLERS[resampler](digit, 37.0),
                 rotate_image(digit, 40.0)]
        raw.append(share(views, blur=False))
        blurred.append(share(views, blur=True))
    assert np.mean(raw) > 0.4
    assert np.mean(blurred) < 0.75 * np.mean(raw)


def test_blur_is_part_of_the_saved_model(tmp_path):
    spec = ModelSpec(backbone="compact", head="bins", input_blur=0.8)
    model = AngleModel(spec).eval()
    sharp = AngleModel(ModelSpec(backbone="compact", head="bins")).eval()
    sharp.load_state_dict(model.state_dict())  # same weights; only the front end differs
    x = torch.rand(2, 1, 28, 28)
    assert not torch.allclose(model(x), sharp(x))
    checkpoint.save(tmp_path, model)
    loaded, _ = checkpoint.load(tmp_path)
    assert loaded.spec.input_blur == 0.8
    assert torch.allclose(loaded.eval()(x), model(x), atol=1e-6)


def test_negative_blur_is_a_clear_error():
    with pytest.raises(ValueError, match="input_blur"):
        AngleModel(ModelSpec(backbone="compact", head="bins", input_blur=-1.0))
