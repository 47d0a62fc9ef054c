import cv2
import numpy as np
import pytest
import torch

from upright.geometry import largest_upright_rectangle, rotate_batch, rotate_image


def _dot_image(h=9, w=9, y=4, x=7):
    img = np.zeros((h, w), np.float32)
    img[y, x] = 1.0
    return img


def test_plus_90_turns_counter_clockwise_as_opencv_does():
    # A dot right of the centre must end up above it (y axis points down in images).
    img = _dot_image()
    batch = rotate_batch(torch.from_numpy(img)[None, None], torch.tensor([90.0]))[0, 0].numpy()
    assert np.unravel_index(batch.argmax(), batch.shape) == (1, 4)
    matrix = cv2.getRotationMatrix2D((4.0, 4.0), 90.0, 1.0)
    reference = cv2.warpAffine(img, matrix, (9, 9))
    assert np.unravel_index(reference.argmax(), reference.shape) == (1, 4)
    full = rotate_image(img, 90.0)
    np.testing.assert_allclose(full, reference, atol=1e-6)


@pytest.mark.parametrize("shape", [(28, 28), (20, 32), (33, 17)])
def test_batch_rotation_matches_full_image_rotation(shape):
    rng = np.random.default_rng(0)
    h, w = shape
    img = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (5, 5), 1.5)
    angles = [-170.0, -37.5, 12.0, 90.0, 179.0]
    batch = rotate_batch(torch.from_numpy(np.stack([img] * 5))[:, None], torch.tensor(angles))
    for i, angle in enumerate(angles):
        expected = rotate_image(img, angle)
        # OpenCV quantises sample positions to 1/32 pixel, so allow small local differences.
        diff = np.abs(batch[i, 0].numpy() - expected)
        assert diff.mean() < 2e-3
        assert diff.max() < 0.05


def test_fill_value_fills_the_corners():
    img = torch.zeros(1, 1, 16, 16)
    out = rotate_batch(img, torch.tensor([45.0]), fill=1.0)
    assert out[0, 0, 0, 0] == pytest.approx(1.0, abs=1e-5)
    assert out[0, 0, 8, 8] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("w, h", [(64, 64), (120, 40), (40, 120), (300, 200)])
@pytest.mark.parametrize("angle", [7.0, 33.0, -60.0, 95.0, 180.0])
def test_crop_canvas_holds_no_fill(w, h, angle):
    img = np.full((h, w), 255, np.uint8)
    out = rotate_image(img, angle, canvas="crop", fill=0)
    assert out.min() == 255
    cw, ch = largest_upright_rectangle(w, h, angle)
    assert out.shape == (int(ch), int(cw))


def test_expand_canvas_keeps_every_pixel():
    img = np.full((40, 100), 200, np.uint8)
    out = rotate_image(img, 30.0, canvas="expand")
    assert out.shape[1] >= 100 * np.cos(np.radians(30)) + 40 * np.sin(np.radians(30)) - 1
    assert abs(int(out.astype(np.int64).sum()) - 200 * 40 * 100) < 0.02 * 200 * 40 * 100


def test_every_resampler_rotates_the_same_way():
    from upright.geometry import RESAMPLERS

    torch.manual_seed(0)
    x = torch.zeros(1, 1, 21, 21)
    x[0, 0, 4:8, 9:12] = 1.0  # a blob above the centre
    angles = torch.tensor([90.0])
    for mode in RESAMPLERS:
        # "area" blurs even at 0 degrees: a quarter turn of its unrotated output
        unrotated = rotate_batch(x, torch.zeros(1), mode="area") if mode == "area" else x
        reference = torch.rot90(unrotated, 1, dims=(2, 3))  # a quarter turn counter-clockwise
        out = rotate_batch(x, angles, mode=mode)
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        np.testing.assert_allclose(out.numpy(), reference.numpy(), atol=1e-4)


def test_area_resampler_blurs_the_same_at_every_angle_unlike_bilinear():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 4:24, 4:24] = torch.rand(64, 1, 20, 20)  # fine detail, inside the frame

    def kept_energy(mode: str, angle: float) -> float:
        out = rotate_batch(x, torch.full((64,), angle), mode=mode)
        return float((out ** 2).sum() / (x ** 2).sum())

    bilinear = [kept_energy("bilinear", a) for a in (0.0, 22.5, 45.0)]
    area = [kept_energy("area", a) for a in (0.0, 22.5, 45.0)]
    assert bilinear[0] > 0.99 and max(bilinear[1:]) < 0.87  # the angle shows in the blur
    assert max(area) - min(area) < 0.03  # it hardly does


def test_mixed_resamplers_split_the_batch_between_them():
    from upright.geometry import rotate_mixed

    torch.manual_seed(0)
    x = torch.rand(6, 1, 15, 15)
    angles = torch.full((6,), 33.0)
    mixed = rotate_mixed(x, angles, modes=["bilinear", "bicubic", "nearest"])
    for part, mode in zip(range(0, 6, 2), ("bilinear", "bicubic", "nearest"), strict=True):
        alone = rotate_batch(x[part:part + 2], angles[part:part + 2], mode=mode)
        torch.testing.assert_close(mixed[part:part + 2], alone)
    # Nearest only copies source pixels (or the black fill); bilinear makes new values.
    source_values = set(np.round(x[4:].numpy().ravel(), 6)) | {0.0}
    assert set(np.round(mixed[4:].numpy().ravel(), 6)) <= source_values
    assert not set(np.round(mixed[:2].numpy().ravel(), 6)) <= set(np.round(x[:2].numpy().ravel(), 6)) | {0.0}


def test_cubic_resampler_is_grid_samples_bicubic_at_a_075_and_pillows_rotate_at_a_1():
    from PIL import Image

    rng = np.random.default_rng(3)
    images = np.zeros((12, 28, 28), np.uint8)
    images[:, 6:22, 6:22] = rng.integers(0, 256, (12, 16, 16))  # black border, as MNIST
    angles = rng.integers(-180, 180, 12).astype(np.float32)
    x = torch.from_numpy(images).float().unsqueeze(1) / 255
    a = torch.from_numpy(angles)
    torch.testing.assert_close(rotate_batch(x, a, mode="cubic", cubic_a=-0.75),
                               rotate_batch(x, a, mode="bicubic"), atol=1e-5, rtol=0)
    pillow = np.stack([np.asarray(Image.fromarray(im).rotate(float(angle), resample=Image.BICUBIC))
                       for im, angle in zip(images, angles, strict=True)]).astype(np.float32)
    for cubic_a, expected in ((-1.0, "close"), (-0.5, "far")):
        ours = rotate_batch(x, a, mode="cubic", cubic_a=cubic_a)[:, 0].numpy() * 255
        mean_difference = np.abs(ours - pillow).mean()
        assert (mean_difference < 0.5) == (expected == "close"), (cubic_a, mean_difference)
    # Pillow truncates to 8 bits, it does not round: at a = -1 the floor of ours is Pillow's
    # image pixel for pixel (but for float ties); rounded, about half the content differs.
    ours = rotate_batch(x, a, mode="cubic", cubic_a=-1.0)[:, 0].numpy() * 255
    content = pillow > 0
    assert (np.floor(ours + 1e-4) == pillow)[content].mean() > 0.995
    assert (np.round(ours) == pillow)[content].mean() < 0.7


def test_cubic_resampler_takes_a_parameter_per_image_and_training_draws_it():
    from upright.geometry import CUBIC_A_RANGE, rotate_mixed

    torch.manual_seed(0)
    x = torch.rand(2, 1, 15, 15).repeat(2, 1, 1, 1)
    angles = torch.full((4,), 33.0)
    per_image = rotate_batch(x, angles, mode="cubic", cubic_a=torch.tensor([-1.0, -0.5, -1.0, -0.5]))
    torch.testing.assert_close(per_image[0], rotate_batch(x[:1], angles[:1], mode="cubic", cubic_a=-1.0)[0])
    torch.testing.assert_close(per_image[1], rotate_batch(x[1:2], angles[:1], mode="cubic", cubic_a=-0.5)[0])
    assert CUBIC_A_RANGE == (-1.0, -0.5)
    same = x[:1].repeat(4, 1, 1, 1)  # one image four times: only the drawn parameter differs
    drawn = rotate_mixed(same, angles, modes=["cubic"])
    assert len({round(float(d.sum()), 5) for d in drawn}) == 4
    _assert_between_kernels(drawn, same[:1], angles[:1], CUBIC_A_RANGE)


def _assert_between_kernels(drawn: torch.Tensor, image: torch.Tensor, angle: torch.Tensor,
                            a_range: tuple[float, float]) -> None:
    """Each drawn rotation of ``image`` differs from the two ends of ``a_range`` by less
    than those two differ: its parameter was drawn inside the range."""
    sharp, soft = (rotate_batch(image, angle, mode="cubic", cubic_a=a) for a in a_range)
    span = float((soft - sharp).abs().sum())
    for d in drawn:
        assert float((d - soft).abs().sum()) < span and float((d - sharp).abs().sum()) < span


def test_training_draws_the_cubic_parameter_from_the_range_it_is_given():
    from upright.geometry import rotate_mixed

    torch.manual_seed(0)
    x = torch.rand(3, 1, 15, 15)
    angles = torch.tensor([20.0, -75.0, 140.0])
    for a in (-1.25, -0.75):  # a range of one value gives exactly that kernel
        torch.testing.assert_close(rotate_mixed(x, angles, modes=["cubic"], cubic_a_range=(a, a)),
                                   rotate_batch(x, angles, mode="cubic", cubic_a=a))
    # Drawn from [-1.25, -0.75], each image lies between those two kernels' results.
    same = x[:1].repeat(16, 1, 1, 1)
    drawn = rotate_mixed(same, angles[:1].repeat(16), modes=["cubic"], cubic_a_range=(-1.25, -0.75))
    _assert_between_kernels(drawn, same[:1], angles[:1], (-1.25, -0.75))


def test_unknown_resampler_is_a_clear_error():
    with pytest.raises(ValueError, match="resampler"):
        rotate_batch(torch.zeros(1, 1, 4, 4), torch.zeros(1), mode="lanczos")


def test_sharpness_jitter_blurs_and_sharpens_but_keeps_flat_images():
    from upright.geometry import jitter_sharpness

    torch.manual_seed(0)
    flat = torch.full((8, 1, 9, 9), 0.4)
    torch.testing.assert_close(jitter_sharpness(flat, 1.0), flat)  # nothing to sharpen
    edge = torch.zeros(64, 1, 9, 9)
    edge[:, :, :, 5:] = 0.8
    out = jitter_sharpness(edge, 1.0)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    # Some images came out blurred (a value between the two levels beside the edge) ...
    assert ((out[:, 0, 4, 4] > 0.05) & (out[:, 0, 4, 4] < 0.75)).any()
    # ... and some sharpened (overshoot above the bright level, where it is not clipped).
    assert (out[:, 0, 4, 5] > 0.85).any()
    torch.testing.assert_close(jitter_sharpness(edge, 0.0), edge)


@pytest.mark.parametrize("resampler", ["pillow_bicubic", "pillow_nearest", "opencv_lanczos"])
def test_other_libraries_rotate_the_same_items_the_same_way(resampler):
    from upright.data.rotated import fixed_angle_set
    from upright.evaluation import resampled_set

    images = np.zeros((2, 21, 21), np.uint8)
    images[:, 3:9, 8:13] = 255  # a block above the centre
    rotated = fixed_angle_set(images, (-120, 0, 35, 90))
    other = resampled_set(rotated, resampler)
    assert other.images.dtype == np.uint8 and len(other) == len(rotated) == 8
    np.testing.assert_array_equal(other.angles, rotated.angles)
    x = torch.from_numpy(images[rotated.source]).float().unsqueeze(1) / 255
    ours = rotate_batch(x, torch.from_numpy(rotated.angles).float())[:, 0].numpy() * 255
    # Same geometry: only edge pixels differ, by less than a tenth of the block's level.
    assert np.abs(other.images.astype(np.float32) - ours).mean() < 0.1 * 255 * (30 / 441)


def test_unknown_other_resampler_is_a_clear_error():
    from upright.data.rotated import fixed_angle_set
    from upright.evaluation import resampled_set

    with pytest.raises(ValueError, match="resampler 'lanczos'"):
        resampled_set(fixed_angle_set(np.zeros((1, 5, 5), np.uint8)), "lanczos")


def test_two_step_rotation_lands_on_the_same_angle_by_a_random_route():
    from upright.geometry import rotate_two_steps

    x = torch.zeros(4, 1, 29, 29)
    x[:, 0, 4:10, 12:17] = 1.0  # a blob above the centre
    angles = torch.tensor([90.0, -45.0, 170.0, 10.0])
    once = rotate_batch(x, angles)
    ys, xs = torch.meshgrid(torch.arange(29.0), torch.arange(29.0), indexing="ij")

    def centroids(images):
        mass = images[:, 0].sum(dim=(1, 2))
        return torch.stack([(images[:, 0] * ys).sum(dim=(1, 2)) / mass,
                            (images[:, 0] * xs).sum(dim=(1, 2)) / mass], dim=1)

    torch.manual_seed(0)
    first = rotate_two_steps(x, angles, modes=["bilinear", "nearest"])
    second = rotate_two_steps(x, angles, modes=["bilinear", "nearest"])
    torch.testing.assert_close(centroids(first), centroids(once), atol=0.35, rtol=0)
    torch.testing.assert_close(centroids(second), centroids(once), atol=0.35, rtol=0)
    assert not torch.allclose(first, second)  # a different intermediate angle each call
    assert abs(float(first.sum() - once.sum())) < 0.05 * float(once.sum())  # mass kept


def test_image_interpolations_are_opencvs_and_unknown_ones_fail_clearly():
    from upright.geometry import IMAGE_INTERPOLATIONS

    assert IMAGE_INTERPOLATIONS == {"linear": cv2.INTER_LINEAR, "lanczos4": cv2.INTER_LANCZOS4}
    img = np.zeros((15, 15), np.uint8)
    img[3:7, 5:10] = 255
    matrix = cv2.getRotationMatrix2D((7.0, 7.0), 33.0, 1.0)
    reference = cv2.warpAffine(img, matrix, (15, 15), flags=cv2.INTER_LANCZOS4)
    np.testing.assert_array_equal(rotate_image(img, 33.0, interpolation="lanczos4"), reference)
    assert not np.array_equal(rotate_image(img, 33.0), reference)  # linear differs
    with pytest.raises(ValueError, match="unknown interpolation 'cubic'"):
        rotate_image(img, 10.0, interpolation="cubic")


def test_training_code_leaves_opencv_unloaded():
    # OpenCV is 15 MB of every process that imports it; training keeps under 0.5 GB without.
    import subprocess
    import sys

    code = ("import sys, upright.cli, upright.experiments, upright.training; "
            "print('cv2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_quantise_8bit_rounds_or_truncates_each_whole_image_to_grey_levels():
    from upright.geometry import quantise_8bit

    torch.manual_seed(0)
    # Values a quarter level off the grid: rounding and truncation give different levels.
    levels = torch.randint(0, 255, (64, 1, 6, 6)).float()
    x = (levels + 0.75) / 255
    q = quantise_8bit(x) * 255
    torch.testing.assert_close(q, torch.round(q))  # on the 8-bit grid
    truncated = (q == levels).flatten(1).all(dim=1)
    rounded = (q == levels + 1).flatten(1).all(dim=1)
    assert bool((truncated | rounded).all())  # one rule per image, never mixed
    assert 16 < int(truncated.sum()) < 48  # about half each
