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
    batch = rotate_batch(torch.from_numpy(img)[None, None], torch.tensor([90.0]),
                         centre="image")[0, 0].numpy()
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
    batch = rotate_batch(torch.from_numpy(np.stack([img] * 5))[:, None], torch.tensor(angles),
                         centre="article")
    for i, angle in enumerate(angles):
        expected = rotate_image(img, angle, centre="article")
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
        out = rotate_batch(x, angles, mode=mode, centre="image")  # rot90's centre
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
    a_image = {"centre": "image"}  # Pillow turns about the true centre
    pillow = np.stack([np.asarray(Image.fromarray(im).rotate(float(angle), resample=Image.BICUBIC))
                       for im, angle in zip(images, angles, strict=True)]).astype(np.float32)
    for cubic_a, expected in ((-1.0, "close"), (-0.5, "far")):
        ours = rotate_batch(x, a, mode="cubic", cubic_a=cubic_a, **a_image)[:, 0].numpy() * 255
        mean_difference = np.abs(ours - pillow).mean()
        assert (mean_difference < 0.5) == (expected == "close"), (cubic_a, mean_difference)
    # Pillow truncates to 8 bits, it does not round: at a = -1 the floor of ours is Pillow's
    # image pixel for pixel (but for float ties); rounded, about half the content differs.
    ours = rotate_batch(x, a, mode="cubic", cubic_a=-1.0, **a_image)[:, 0].numpy() * 255
    content = pillow > 0
    assert (np.floor(ours + 1e-4) == pillow)[content].mean() > 0.995
    assert (np.round(ours) == pillow)[content].mean() < 0.7


def test_unknown_resampler_is_a_clear_error():
    with pytest.raises(ValueError, match="resampler"):
        rotate_batch(torch.zeros(1, 1, 4, 4), torch.zeros(1), mode="lanczos")


@pytest.mark.parametrize("resampler, centre", [("pillow_bicubic", "image"), ("pillow_nearest", "image"),
                                               ("opencv_lanczos", "article"), ("physical", "article")])
def test_other_libraries_rotate_the_same_items_the_same_way(resampler, centre):
    from upright.data.rotated import fixed_angle_set
    from upright.resamplers import resampled_set

    images = np.zeros((2, 21, 21), np.uint8)
    images[:, 3:9, 8:13] = 255  # a block above the centre
    rotated = fixed_angle_set(images, (-120, 0, 35, 90))
    other = resampled_set(rotated, resampler)
    assert other.images.dtype == np.uint8 and len(other) == len(rotated) == 8
    np.testing.assert_array_equal(other.angles, rotated.angles)
    x = torch.from_numpy(images[rotated.source]).float().unsqueeze(1) / 255
    ours = rotate_batch(x, torch.from_numpy(rotated.angles).float(), centre=centre)[:, 0].numpy() * 255
    # Same geometry: only edge pixels differ, by less than a tenth of the block's level.
    assert np.abs(other.images.astype(np.float32) - ours).mean() < 0.1 * 255 * (30 / 441)


def test_unknown_other_resampler_is_a_clear_error():
    from upright.data.rotated import fixed_angle_set
    from upright.resamplers import resampled_set

    with pytest.raises(ValueError, match="resampler 'lanczos'"):
        resampled_set(fixed_angle_set(np.zeros((1, 5, 5), np.uint8)), "lanczos")


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


@pytest.mark.slow  # a fresh interpreter importing Lightning: 6 s; CI runs it
def test_training_code_leaves_opencv_unloaded():
    # OpenCV is 15 MB of every process that imports it; training keeps under 0.5 GB without.
    import subprocess
    import sys

    code = ("import sys, upright.cli, upright.experiments, upright.training; "
            "print('cv2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _bilinear_reference(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """warpAffine's definition in float64, no fixed point: output pixel p samples the input
    at inverse(matrix) p, bilinear, zeros outside."""
    h, w = image.shape
    inverse = cv2.invertAffineTransform(matrix)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = sx - x0, sy - y0
    padded = np.pad(image.astype(np.float64), 2)

    def tap(yy, xx):
        return padded[np.clip(yy + 2, 0, h + 3), np.clip(xx + 2, 0, w + 3)]

    return ((1 - fy) * ((1 - fx) * tap(y0, x0) + fx * tap(y0, x0 + 1))
            + fy * ((1 - fx) * tap(y0 + 1, x0) + fx * tap(y0 + 1, x0 + 1)))


@pytest.mark.parametrize("h, w", [(28, 28), (64, 64), (20, 31)])
def test_protocol_matrices_are_the_articles_opencv_call(h, w):
    from upright.geometry import rotation_matrices

    angles = [-180.0, -137.0, -90.0, -1.0, 0.0, 25.0, 90.0, 179.0]
    ours = rotation_matrices(torch.tensor(angles), h, w).numpy()
    for matrix, angle in zip(ours, angles, strict=True):
        np.testing.assert_allclose(matrix, cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0),
                                   atol=1e-12)


@pytest.mark.parametrize("h, w", [(28, 28), (64, 64), (20, 31)])
def test_protocol_rotation_is_the_articles_opencv_rotation_pixel_for_pixel(h, w):
    rng = np.random.default_rng(5)
    image = np.zeros((h, w), np.uint8)
    image[3:h - 4, 4:w - 3] = rng.integers(0, 256, (h - 7, w - 7))
    image = cv2.GaussianBlur(image, (3, 3), 0.8)  # strokes, not pixel noise
    angles = rng.integers(-180, 180, 12).astype(np.float64)
    x = torch.from_numpy(np.stack([image] * len(angles))).float()[:, None] / 255
    ours = rotate_batch(x, torch.from_numpy(angles).float())[:, 0].numpy().astype(np.float64) * 255
    for out, angle in zip(ours, angles, strict=True):
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        # The definition, exactly (float32 rounding aside) ...
        np.testing.assert_allclose(out, _bilinear_reference(image, matrix), atol=2e-3)
        # ... and OpenCV's own call, which rounds sample positions to 1/32 pixel.
        opencv = cv2.warpAffine(image, matrix, (w, h)).astype(np.float64)
        assert np.abs(np.round(out) - opencv).mean() < 1.0
        image_centre = rotate_batch(x[:1], torch.tensor([angle], dtype=torch.float32),
                                    centre="image")[0, 0].numpy() * 255
        if abs(angle) > 30:  # about another centre the pixels differ far more
            assert np.abs(image_centre - opencv).mean() > 3 * np.abs(out - opencv).mean()


def test_protocol_quarter_turns_equal_opencv_exactly_and_move_no_mnist_digit():
    rng = np.random.default_rng(0)
    image = np.zeros((28, 28), np.uint8)
    image[4:24, 4:24] = rng.integers(0, 256, (20, 20))
    x = torch.from_numpy(image).float()[None, None] / 255
    for angle in (-90.0, 90.0, 180.0):
        ours = np.round(rotate_batch(x, torch.tensor([angle]))[0, 0].numpy() * 255)
        opencv = cv2.warpAffine(image, cv2.getRotationMatrix2D((14.0, 14.0), angle, 1.0), (28, 28))
        np.testing.assert_array_equal(ours, opencv)
    # MNIST puts a digit's centre of mass at pixel (14, 14): the article's centre, so its
    # rotations leave the digit where it is; about (13.5, 13.5) they move it by up to 0.7 px.
    blob = torch.zeros(1, 1, 28, 28)
    blob[0, 0, 11:18, 11:18] = 1.0  # centre of mass (14, 14)
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")

    def centre_of_mass(images):
        return float((images * xs).sum() / images.sum()), float((images * ys).sum() / images.sum())

    for angle in (45.0, 180.0, -120.0):
        article = rotate_batch(blob, torch.tensor([angle]))
        assert np.allclose(centre_of_mass(article), (14.0, 14.0), atol=1e-3)
    moved = centre_of_mass(rotate_batch(blob, torch.tensor([180.0]), centre="image"))
    assert np.allclose(moved, (13.0, 13.0), atol=1e-3)


def test_pose_scales_and_shifts_before_the_turn():
    blob = torch.zeros(1, 1, 28, 28)
    blob[0, 0, 12:17, 12:17] = 1.0  # centre of mass (14, 14), 25 pixels
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    shifted = rotate_batch(blob, torch.tensor([90.0]), shift=torch.tensor([[2.0, 0.0]]))
    # Moved 2 px right, then turned a quarter counter-clockwise: 2 px up.
    com = (float((shifted * xs).sum() / shifted.sum()), float((shifted * ys).sum() / shifted.sum()))
    assert np.allclose(com, (14.0, 12.0), atol=1e-3)
    bigger = rotate_batch(blob, torch.tensor([0.0]), scale=torch.tensor([1.4]))
    assert float(bigger.sum()) == pytest.approx(25 * 1.4 ** 2, rel=0.02)


def test_unknown_centre_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown centre 'middle'"):
        rotate_batch(torch.zeros(1, 1, 4, 4), torch.zeros(1), centre="middle")
