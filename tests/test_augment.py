"""Training-only augmentation: resampler mixes, pose, sharpness, noise, JPEG, 8 bits."""

import cv2
import numpy as np
import pytest
import torch

from upright.geometry import rotate_batch


def test_mixed_resamplers_split_the_batch_between_them():
    from upright.augment import rotate_mixed

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


def test_cubic_resampler_takes_a_parameter_per_image_and_training_draws_it():
    from upright.augment import rotate_mixed
    from upright.geometry import CUBIC_A_RANGE

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
    from upright.augment import rotate_mixed

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


def test_sharpness_jitter_blurs_and_sharpens_but_keeps_flat_images():
    from upright.augment import jitter_sharpness

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


def test_two_step_rotation_lands_on_the_same_angle_by_a_random_route():
    from upright.augment import rotate_two_steps

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
    torch.testing.assert_close(centroids(first), centroids(once), atol=0.4, rtol=0)
    torch.testing.assert_close(centroids(second), centroids(once), atol=0.4, rtol=0)
    assert not torch.allclose(first, second)  # a different intermediate angle each call
    assert abs(float(first.sum() - once.sum())) < 0.05 * float(once.sum())  # mass kept


def test_quantise_8bit_rounds_or_truncates_each_whole_image_to_grey_levels():
    from upright.augment import quantise_8bit

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


def test_jpeg_artefacts_are_what_libjpeg_does_to_a_grey_image():
    from upright.augment import jpeg_compress

    rng = np.random.default_rng(0)
    images = np.zeros((20, 28, 28), np.uint8)
    images[:, 6:22, 10:18] = rng.integers(100, 256, (20, 16, 8))
    images = cv2.GaussianBlur(images.transpose(1, 2, 0), (3, 3), 0.8).transpose(2, 0, 1).copy()
    x = torch.from_numpy(images).float()[:, None] / 255
    for quality in (30, 75, 95):
        ours = jpeg_compress(x, torch.full((20,), quality))[:, 0].numpy() * 255
        libjpeg = np.stack([cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, quality])[1],
                                         cv2.IMREAD_GRAYSCALE) for im in images]).astype(np.float32)
        artefact = np.abs(libjpeg - images).mean()
        assert artefact > 0.3
        assert np.abs(ours - libjpeg).mean() < 0.3 * artefact  # the same artefacts, not others
        np.testing.assert_array_equal(ours, np.round(ours))  # 8-bit levels


def test_noise_has_the_drawn_spread_and_stays_in_range():
    from upright.augment import add_noise

    torch.manual_seed(0)
    x = torch.full((400, 1, 16, 16), 0.5)
    noisy = add_noise(x, 12 / 255)
    spread = (noisy - x).flatten(1).std(dim=1) * 255
    assert float(spread.max()) < 13.0 and float(spread.min()) < 2.0  # sigma uniform in [0, 12]
    assert abs(float(spread.mean()) - 6.0) < 0.6
    assert float(add_noise(torch.ones(4, 1, 8, 8), 0.2).max()) <= 1.0
    torch.testing.assert_close(add_noise(x, 0.0), x)


def test_augmentation_moves_scales_and_turns_the_content():
    from upright.augment import Augmentation

    torch.manual_seed(0)
    blob = torch.zeros(256, 1, 28, 28)
    blob[:, :, 12:17, 12:17] = 1.0
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    plain = Augmentation()(blob, torch.zeros(256))
    torch.testing.assert_close(plain, blob)  # no augmentation: the protocol's turn only
    posed = Augmentation(shift=2.0, scale=(0.8, 1.2))(blob, torch.zeros(256))
    mass = posed.sum(dim=(1, 2, 3))
    com_x = (posed[:, 0] * xs).sum(dim=(1, 2)) / mass
    assert float(com_x.min()) < 12.5 and float(com_x.max()) > 15.5  # moved up to 2 px
    assert float((com_x - 14).abs().max()) <= 2.0 + 1e-3
    assert float(mass.min()) < 25 * 0.7 and float(mass.max()) > 25 * 1.3  # scaled


@pytest.mark.parametrize("setting, message", [
    ({"scale": (1.2, 0.8)}, "train_scale must be"), ({"scale": (0.0, 1.0)}, "train_scale must be positive"),
    ({"jpeg_quality": (20, 120)}, "train_jpeg_quality must lie"), ({"rotation_steps": 3}, "rotation_steps"),
    ({"cubic_a": (-1.0,)}, "train_cubic_a must be")])
def test_bad_augmentation_settings_are_clear_errors(setting, message):
    from upright.augment import Augmentation

    with pytest.raises(ValueError, match=message):
        Augmentation(**setting)


def test_gaussian_blur_spreads_a_dot_by_its_own_sigma_and_keeps_its_mass():
    from upright.augment import gaussian_blur

    dots = torch.zeros(3, 1, 21, 21)
    dots[:, :, 10, 10] = 1.0
    out = gaussian_blur(dots, torch.tensor([0.0, 0.8, 1.5]))
    assert torch.allclose(out[0], dots[0], atol=1e-6)  # sigma 0 leaves it alone
    ys = torch.arange(21.0)[:, None] - 10
    for i, sigma in ((1, 0.8), (2, 1.5)):
        assert float(out[i].sum()) == pytest.approx(1.0, abs=1e-5)
        spread = float((out[i, 0] * ys**2).sum()) ** 0.5  # std along y
        assert spread == pytest.approx(sigma, rel=0.05)


def test_gaussian_blur_is_a_replicate_padded_2d_convolution_per_image_and_channel():
    """The band-matrix filter gives what one 2-D convolution per image gives, at the
    image's edges too (replicate padding), on colour images."""
    import torch.nn.functional as F

    from upright.augment import gaussian_blur

    torch.manual_seed(0)
    x = torch.rand(3, 2, 9, 12)
    sigmas = torch.tensor([0.5, 1.0, 1.3])
    radius = 4  # ceil(3 * 1.3)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    for i, sigma in enumerate(sigmas):
        k = torch.exp(-0.5 * (t / sigma) ** 2)
        k = k / k.sum()
        kernel = (k[:, None] * k[None, :]).expand(2, 1, -1, -1)
        padded = F.pad(x[i:i + 1], (radius,) * 4, mode="replicate")
        torch.testing.assert_close(gaussian_blur(x, sigmas)[i:i + 1], F.conv2d(padded, kernel, groups=2),
                                   atol=1e-6, rtol=0)


def test_blur_jitter_blurs_about_half_the_batch_and_rejects_silly_sigmas():
    from upright.augment import Augmentation, jitter_blur

    torch.manual_seed(0)
    images = (torch.rand(400, 1, 16, 16) > 0.5).float()
    out = jitter_blur(images, 1.5)
    changed = (out - images).abs().flatten(1).amax(1) > 1e-3
    assert 0.4 < float(changed.float().mean()) < 0.6
    with pytest.raises(ValueError, match="train_blur"):
        Augmentation(blur=9.0)


def test_no_up_images_are_in_range_and_of_every_kind():
    from upright.augment import NO_UP_KINDS, no_up_images

    torch.manual_seed(0)
    x = no_up_images(400, 3, 28, 28)
    assert x.shape == (400, 3, 28, 28) and float(x.min()) >= 0 and float(x.max()) <= 1
    flat = ((x.amax(dim=(2, 3)) - x.amin(dim=(2, 3))) < 1e-6).all(dim=1)  # the constant kind
    assert 0.1 < float(flat.float().mean()) < 0.5 and len(NO_UP_KINDS) == 4


def test_the_flat_target_is_met_by_a_flat_distribution_only():
    from upright.models.heads import AngleBins

    head = AngleBins(8)
    assert abs(float(head.flat_loss(torch.zeros(4, 360)))) < 1e-5
    peaked = torch.zeros(4, 360)
    peaked[:, 100] = 8.0
    assert float(head.flat_loss(peaked)) > 1.0


def test_a_batch_with_no_up_images_mixes_both_losses_and_needs_a_distribution():
    from upright.config import ConfigError
    from upright.models.model import AngleModel
    from upright.recipes import make_config
    from upright.training import AngleModule

    with pytest.raises(ConfigError, match="no distribution to make flat"):
        make_config("mnist-published", {"train_no_up": 0.1})
    config = make_config("mnist-fast", {"train_no_up": 0.25})
    torch.manual_seed(0)
    module = AngleModule(AngleModel(config.model), config)
    module.log = lambda *a, **k: None
    images = torch.randint(0, 256, (8, 28, 28), dtype=torch.uint8)
    angles = torch.linspace(-170, 170, 8)
    raw_seen = []
    head_forward = module.model.head.forward
    module.model.head.forward = lambda f: (raw_seen.append(head_forward(f)), raw_seen[-1])[1]
    torch.manual_seed(1)
    loss = module._step((images, angles), "train")
    raw = raw_seen[-1].detach()
    head = module.model.head
    expected = 0.75 * head.loss(raw[2:], angles[2:]) + 0.25 * head.flat_loss(raw[:2])
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
