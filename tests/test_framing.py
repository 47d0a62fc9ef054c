"""Framing in front of the network: a digit anywhere in the frame, at any size, is brought
into the range training covers; a digit already there is left alone; framing never tells
the network the angle; it is in every path."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from support import needs_mnist
from upright.geometry import rotate_batch
from upright.models.framing import (
    CENTRE_BAND,
    FRAMED_RADIUS,
    RADIUS_BAND,
    frame_by_moments,
    ink_moments,
)
from upright.models.model import AngleModel, ModelSpec
from upright.prepare import autocontrast


def _mnist_digits(n: int = 16) -> torch.Tensor:
    from upright.data.mnist import load_mnist

    source = load_mnist()
    keep = np.flatnonzero(source.is_test & ~np.isin(source.groups, (0, 1, 6, 8)))[:n]
    return torch.from_numpy(source.images[keep]).float().div(255)[:, None]


def _half_size_in_a_corner(x: torch.Tensor) -> torch.Tensor:
    small = torch.zeros_like(x)
    small[..., 1:15, 13:27] = F.interpolate(x, size=(14, 14), mode="area")
    return small


@needs_mnist
def test_a_digit_at_half_size_in_a_corner_is_brought_into_the_band_training_covers():
    x = _half_size_in_a_corner(autocontrast(_mnist_digits(), torch.ones(1, 1, 28, 28)))
    for images, inside in ((x, False), (frame_by_moments(x), True)):
        _, cx, cy, radius = ink_moments(images)
        off_centre = torch.sqrt(cx**2 + cy**2) / 28
        ratio = radius / (FRAMED_RADIUS * 28)
        if inside:
            assert float(off_centre.max()) <= CENTRE_BAND + 0.01
            assert float(ratio.min()) >= RADIUS_BAND[0] - 0.03
        else:  # (the test would prove nothing if the moved digits were in the band already)
            assert float(off_centre.min()) > CENTRE_BAND and float(ratio.max()) < RADIUS_BAND[0]


@needs_mnist
def test_the_shipped_model_reads_a_half_size_digit_in_a_corner_because_of_framing():
    from upright import checkpoint
    from upright.models.framing import FRAMINGS

    model, _ = checkpoint.load("mnist")
    assert model.spec.framing == "moments"
    x = _half_size_in_a_corner(_mnist_digits(300))
    angles = torch.from_numpy(np.random.default_rng(0).integers(-180, 180, len(x))).float()
    turned = rotate_batch(x, angles, centre="image")

    def mae() -> float:
        error = (model.predict_angles(turned, tta=True) - angles + 180) % 360 - 180
        return float(error.abs().mean())

    framed = mae()
    model.framing = FRAMINGS["none"]
    unframed = mae()
    assert framed < 20 and framed < 0.5 * unframed  # measured: 11.8 against 60.0


@needs_mnist
def test_digits_as_mnist_frames_them_pass_through_untouched():
    """Resampling every image blurs what the angle is read from: inside the band, nothing."""
    x = autocontrast(_mnist_digits(400), torch.ones(1, 1, 28, 28))
    untouched = (frame_by_moments(x) == x).flatten(1).all(dim=1)
    assert float(untouched.float().mean()) >= 0.99
    _, cx, cy, radius = ink_moments(x)
    ratio = radius / (FRAMED_RADIUS * 28)
    inside = ((ratio >= RADIUS_BAND[0]) & (ratio <= RADIUS_BAND[1])
              & (torch.sqrt(cx**2 + cy**2) <= CENTRE_BAND * 28))
    assert bool(untouched[inside].all())


@needs_mnist
def test_in_a_mixed_batch_each_image_is_framed_as_it_would_be_alone():
    x = autocontrast(_mnist_digits(6), torch.ones(1, 1, 28, 28))
    moved = _half_size_in_a_corner(x)
    mixed = torch.stack([t for pair in zip(x, moved, strict=True) for t in pair])
    framed = frame_by_moments(mixed)
    assert torch.equal(framed[0::2], frame_by_moments(x)) and torch.equal(framed[0::2], x)
    torch.testing.assert_close(framed[1::2], frame_by_moments(moved))
    assert frame_by_moments(mixed[:0]).shape == (0, 1, 28, 28)


@needs_mnist
def test_framing_commutes_with_turns_so_it_cannot_carry_the_angle():
    x = _half_size_in_a_corner(_mnist_digits(8))  # framing moves and scales every one
    framed = frame_by_moments(x)
    assert not torch.equal(framed, x)
    for k in (1, 2, 3):  # exact quarter turns: exactly
        torch.testing.assert_close(frame_by_moments(torch.rot90(x, k, dims=(2, 3))),
                                   torch.rot90(framed, k, dims=(2, 3)), atol=1e-4, rtol=0)
    # Any angle about the centre, up to resampling: much closer than the turned images are
    # to the unturned ones.
    angles = torch.tensor([30.0, -75.0, 140.0, 11.0] * 2)
    turned_then_framed = frame_by_moments(rotate_batch(x, angles, centre="image"))
    framed_then_turned = rotate_batch(framed, angles, centre="image")
    gap = (turned_then_framed - framed_then_turned).abs().mean()
    assert gap < 0.25 * (framed_then_turned - framed).abs().mean()


def test_an_image_without_ink_is_left_as_it_is():
    flat = torch.full((3, 1, 28, 28), 0.1)  # below the ink floor: background
    torch.testing.assert_close(frame_by_moments(flat), flat)
    blank = torch.zeros(2, 3, 16, 20)
    torch.testing.assert_close(frame_by_moments(blank), blank)


def test_the_model_frames_what_its_levels_give_and_only_when_asked():
    torch.manual_seed(0)
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 2:9, 18:24] = 0.9  # small and off centre
    x[:, :, 9:12, 19:21] = 0.4
    framed = AngleModel(ModelSpec(backbone="compact", head="bins", levels="autocontrast", framing="moments"))
    plain = AngleModel(ModelSpec(backbone="compact", head="bins", levels="autocontrast"))
    levelled = autocontrast(x, torch.ones(1, 1, 28, 28))
    torch.testing.assert_close(plain.masked(x), levelled)
    torch.testing.assert_close(framed.masked(x), frame_by_moments(levelled))
    assert not torch.allclose(framed.masked(x), plain.masked(x))


def test_unknown_framing_is_a_clear_error_and_the_choice_survives_a_checkpoint(tmp_path):
    from upright import checkpoint

    with pytest.raises(ValueError, match="unknown framing 'zoom'"):
        AngleModel(ModelSpec(framing="zoom"))
    with pytest.raises(ValueError, match="framing must be a name"):
        checkpoint.check_spec({"framing": 3})
    torch.manual_seed(0)
    model = AngleModel(ModelSpec(backbone="compact", head="bins", framing="moments")).eval()
    checkpoint.save(tmp_path, model)
    loaded, _ = checkpoint.load(tmp_path)
    assert loaded.spec.framing == "moments"
    x = torch.zeros(2, 1, 28, 28)
    x[:, :, 3:12, 4:9] = 1.0
    torch.testing.assert_close(loaded(x), model(x))


def test_onnx_export_keeps_the_framing(tmp_path):
    pytest.importorskip("onnxruntime")
    from upright import checkpoint
    from upright.predictors import OnnxPredictor, TorchPredictor, export_onnx

    torch.manual_seed(0)
    model = AngleModel(ModelSpec(backbone="compact", head="bins", levels="autocontrast",
                                 framing="moments")).eval()
    checkpoint.save(tmp_path / "model", model)
    export_onnx(tmp_path / "model", tmp_path / "export")
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 2:10, 15:26] = torch.rand(4, 1, 8, 11)  # off-centre, small: framing moves it
    onnx = OnnxPredictor(tmp_path / "export").predict_belief(x.numpy())
    torch_beliefs = TorchPredictor(model).predict_belief(x.numpy())
    np.testing.assert_allclose(onnx.confidence, torch_beliefs.confidence, atol=1e-4)
    assert np.abs(((onnx.angle - torch_beliefs.angle + 180) % 360) - 180).max() < 0.01


def _pages(count: int, size: int = 96, seed: int = 7):
    """Dark MNIST digits at random spots of light pages, turned with a light fill."""
    from PIL import Image

    from upright.data.mnist import load_mnist

    source = load_mnist()
    pool = np.flatnonzero(source.is_test & ~np.isin(source.groups, (0, 1, 6, 8)))
    rng = np.random.default_rng(seed)
    chosen, angles = rng.choice(pool, count, replace=False), rng.integers(-180, 180, count)
    pages, spots = [], []
    for i, angle in zip(chosen, angles, strict=True):
        page = np.full((size, size), 235, np.uint8)
        y, x = rng.integers(10, size - 38, 2)
        page[y:y + 28, x:x + 28] = np.minimum(page[y:y + 28, x:x + 28], 255 - source.images[i])
        spots.append((y, x))
        pages.append(np.asarray(Image.fromarray(page).rotate(float(angle), resample=Image.BICUBIC,
                                                             fillcolor=235)))
    return pages, angles.astype(float), spots


@needs_mnist
def test_a_digit_on_a_page_is_cropped_about_at_the_pages_resolution():
    from upright.prepare import content_crop

    pages, _, _ = _pages(20)
    for page in pages:
        crop = content_crop(page, 28)
        assert crop.shape[0] == crop.shape[1] and 28 <= crop.shape[0] <= 40  # MNIST's framing
        def ink(image):
            return (235 - image.astype(float)).clip(0).sum()

        assert ink(crop) >= 0.97 * ink(page)  # the digit is inside it
    # A light digit on black, off centre in a colour image: found too; the border is the
    # background's colour.
    digit = np.zeros((120, 160, 3), np.uint8)
    digit[:] = (10, 40, 20)
    digit[5:25, 120:128] = 250
    digit[5:9, 112:136] = 250
    crop = content_crop(digit, 28)
    assert crop.shape[0] == crop.shape[1] and 28 <= crop.shape[0] <= 48
    assert (crop == 250).all(axis=2).sum() == (digit == 250).all(axis=2).sum()  # all of it
    assert tuple(crop[-1, 0]) == (10, 40, 20)
    corner = np.zeros((100, 100), np.uint8)  # in a corner: the square runs past the edge
    corner[:6, :6] = 255
    crop = content_crop(corner, 28)
    assert crop.shape == (28, 28) and (crop == 255).sum() == 36 and crop[-1, -1] == 0


def test_content_crop_leaves_what_it_cannot_improve():
    from upright.prepare import content_crop

    small = np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)
    assert content_crop(small, 28) is small  # no larger than the model's input
    flat = np.full((200, 300), 77, np.uint8)
    assert content_crop(flat, 28) is flat
    filling = np.zeros((112, 112), np.uint8)
    filling[8:104, 30:82] = 255  # content as large as the frame
    assert content_crop(filling, 28) is filling


@needs_mnist
def test_the_shipped_model_reads_a_digit_on_a_page_through_the_api():
    import upright
    from upright.angles import circular_difference

    pages, angles, _ = _pages(150)
    predictions = upright.load("mnist").predict(pages)
    errors = np.abs(circular_difference(np.array([p.angle for p in predictions]), angles))
    assert errors.mean() < 16  # measured 9.9 (74 before framing, 32 with the model's framing alone)
