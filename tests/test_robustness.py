"""The robustness suite: deterministic variants that change the images as intended."""

import numpy as np
import pytest

from upright import robustness
from upright.data.rotated import protocol_set


def _digits(n: int = 6, size: int = 28) -> np.ndarray:
    """Bright strokes on black with their centre of mass at (14, 14), as MNIST's."""
    images = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        images[i, 7:21, 12:16] = 255  # a vertical bar ...
        images[i, 7:10, 8 + i % 3:20 - i % 3] = 200  # ... with a top bar: an upright shape
    return images


def _centre_of_mass(image: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[:image.shape[0], :image.shape[1]]
    mass = image.astype(np.float64).sum()
    return np.array([(image * xs).sum() / mass, (image * ys).sum() / mass])


@pytest.mark.parametrize("name", sorted(robustness.VARIANTS))
def test_every_variant_is_deterministic_and_keeps_the_items(name):
    items = protocol_set(_digits(), np.arange(6), 3, seed=11)
    first = robustness.variant_set(items, name, seed=5)
    again = robustness.variant_set(items, name, seed=5)
    assert first.images.dtype == np.uint8 and first.images.shape == (18, 28, 28)
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.angles, items.angles)
    # Every variant still shows the turned content: most of its mass lies where the
    # protocol's own rotation puts it.
    protocol = robustness.variant_set(items, "opencv_lanczos", seed=5).images.astype(np.float64)
    made = first.images.astype(np.float64)
    if name == "inverted":
        made = 255 - made
    elif name == "low_contrast":
        made = (made - 80) * 255 / 90
    overlap = (np.minimum(made, protocol).sum() / protocol.sum())
    assert overlap > 0.45, overlap


def test_pose_moves_the_centre_of_mass_and_the_protocol_does_not():
    items = protocol_set(_digits(40), np.arange(40), 1, seed=3)
    posed = robustness.variant_set(items, "pose", seed=1).images
    protocol = robustness.variant_set(items, "noise", seed=1).images  # protocol turn + noise
    jpeg = robustness.variant_set(items, "jpeg", seed=1).images
    turned_com = np.array([_centre_of_mass(im) for im in jpeg])
    posed_com = np.array([_centre_of_mass(im) for im in posed])
    moves = np.linalg.norm(posed_com - turned_com, axis=1)
    assert moves.max() > 1.0 and moves.mean() > 0.5  # shifted by up to 2 px (and scaled)
    # The protocol's turn is about (14, 14): the centre of mass goes where that rotation sends it.
    upright = np.array([_centre_of_mass(im) for im in items.images[items.source]]) - 14.0
    rad = np.radians(items.angles)
    expected = 14.0 + np.stack([np.cos(rad) * upright[:, 0] + np.sin(rad) * upright[:, 1],
                                -np.sin(rad) * upright[:, 0] + np.cos(rad) * upright[:, 1]], 1)
    assert np.abs(turned_com - expected).max() < 0.3
    assert not np.array_equal(protocol, jpeg)


def test_inversion_flips_the_level_of_the_border():
    items = protocol_set(_digits(), np.arange(6), 2, seed=3)
    negative = robustness.variant_set(items, "inverted", seed=0).images
    assert (negative[:, 0, :] > 250).all() and (negative[:, :, 0] > 250).all()  # light fill too
    assert negative.min() < 10  # dark strokes


def test_noise_and_jpeg_change_the_pixels_by_the_intended_amount():
    items = protocol_set(_digits(20), np.arange(20), 1, seed=3)
    clean = robustness.variant_set(items, "opencv_lanczos", seed=0)  # any clean turn
    noisy = robustness.variant_set(items, "noise", seed=0).images.astype(np.float64)
    flat = clean.images == 0  # background: noise clipped at 0 averages sigma / sqrt(2 pi)
    assert 2.5 < noisy[flat].mean() < 5.5
    jpeg = robustness.variant_set(items, "jpeg", seed=0).images.astype(np.float64)
    assert 0.5 < np.abs(jpeg - clean.images).mean() < 10  # JPEG changes pixels too, a little


def test_score_reports_each_variant_and_the_suites_mean_and_worst():
    items = protocol_set(_digits(4), np.arange(4), 2, seed=3)

    def predict(made):  # a "model" that is right except on negatives
        return made.angles + np.where(made.images.mean(axis=(1, 2)) > 128, 90.0, 1.0)

    result = robustness.score(predict, items, seed=0)
    assert set(result["variants"]) == set(robustness.VARIANTS)
    assert result["variants"]["inverted"]["circular_mae"] == pytest.approx(90.0)
    assert result["variants"]["pose"]["circular_mae"] == pytest.approx(1.0)
    assert result["suite"]["worst"] == "inverted"
    n = len(robustness.SUITE)
    assert result["suite"]["mean_circular_mae"] == pytest.approx((89 + n) / n)
    assert result["held_out"]["mean_circular_mae"] == pytest.approx(1.0)


def test_unknown_variant_is_a_clear_error():
    items = protocol_set(_digits(1), np.arange(1), 1, seed=0)
    with pytest.raises(ValueError, match="unknown robustness variant 'fog'"):
        robustness.variant_set(items, "fog", seed=0)


def test_robustness_lines_give_each_part_its_mean_and_worst():
    from upright.evaluation import format_robustness

    part = {"mean_circular_mae": 7.714, "worst": "pillow_bicubic", "worst_circular_mae": 9.13,
            "min_within_5": 0.526}
    lines = format_robustness({"robustness": {"suite": part, "held_out": {**part, "worst": "blur"}}})
    assert lines == ["robustness suite: mean circular MAE 7.71 deg, worst pillow_bicubic 9.13 deg, "
                     "lowest within 5 deg 52.6%",
                     "held-out variations: mean circular MAE 7.71 deg, worst blur 9.13 deg, "
                     "lowest within 5 deg 52.6%"]
    assert format_robustness({"test": {}}) == []  # runs evaluated before the suite existed
