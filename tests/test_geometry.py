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
