"""Training-only augmentation: what a real image goes through that our rotation does not.

A digit in a user's file is not where MNIST put it (pose), was turned by some resampler
(or by the world, with no resampler at all), blurred or sharpened, noisy, stored in 8 bits
and often as a JPEG. Each of these is drawn at random per image here, so the model has to
read the shape and cannot key on a detail of our own pipeline. Evaluation never augments:
the robustness suite (``upright.robustness``) measures the same effects with other tools.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from upright.geometry import CUBIC_A_RANGE, PROTOCOL_CENTRE, rotate_batch, rotation_theta


def draw_pose(n: int, max_shift: float, scale_range: tuple[float, float] | list[float],
              device: torch.device | str = "cpu") -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Per-image scale (uniform in ``scale_range``) and shift (uniform in +-``max_shift``
    pixels on each axis), or None for each that does nothing."""
    low, high = scale_range
    scale = None if low == high == 1.0 else low + (high - low) * torch.rand(n, device=device)
    shift = None if max_shift <= 0 else (torch.rand(n, 2, device=device) * 2 - 1) * max_shift
    return scale, shift


def rotate_mixed(images: torch.Tensor, angles_deg: torch.Tensor, fill: float = 0.0,
                 modes: tuple[str, ...] | list[str] = ("bilinear",),
                 cubic_a_range: tuple[float, float] | list[float] = CUBIC_A_RANGE,
                 centre: str = PROTOCOL_CENTRE, scale: torch.Tensor | None = None,
                 shift: torch.Tensor | None = None) -> torch.Tensor:
    """``rotate_batch`` with the batch split into equal consecutive parts, one per resampler;
    "cubic" draws Keys' parameter per image uniformly from ``cubic_a_range``. ``scale`` and
    ``shift`` (per image, or None) move the content before it is turned."""
    # The maps are found once for the whole batch: their per-call cost was most of the
    # rotation time of a small batch split four ways.
    theta = rotation_theta(angles_deg.to(images.device), images.shape[-2], images.shape[-1], centre,
                           scale, shift)

    def rotate_part(part: torch.Tensor, angles: torch.Tensor, maps: torch.Tensor, mode: str) -> torch.Tensor:
        a = -0.75
        if mode == "cubic":
            low, high = cubic_a_range
            a = low + (high - low) * torch.rand(len(part), device=part.device, dtype=part.dtype)
        return rotate_batch(part, angles, fill, mode, cubic_a=a, centre=centre, theta=maps)

    if len(modes) == 1:  # no split, no copies
        return rotate_part(images, angles_deg, theta, modes[0])
    # Consecutive parts, as views (indexing copied them): the first len % parts one longer.
    parts = zip(*(t.tensor_split(len(modes)) for t in (images, angles_deg, theta)), modes, strict=True)
    return torch.cat([rotate_part(*part) for part in parts if len(part[0])])


def rotate_two_steps(images: torch.Tensor, angles_deg: torch.Tensor, fill: float = 0.0,
                     modes: tuple[str, ...] | list[str] = ("bilinear",),
                     cubic_a_range: tuple[float, float] | list[float] = CUBIC_A_RANGE,
                     centre: str = PROTOCOL_CENTRE, scale: torch.Tensor | None = None,
                     shift: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate by a random angle (after the pose), then by the rest of ``angles_deg``, each
    step with ``rotate_mixed`` (the second step's resamplers shifted by one part). Every
    resampler leaves a fingerprint that tells its own angle modulo 90; here the last step's
    angle is random, so no fingerprint carries the label and only the shape does."""
    first = torch.rand(len(angles_deg), device=angles_deg.device) * 360.0 - 180.0
    turned = rotate_mixed(images, first, fill, modes, cubic_a_range, centre, scale, shift)
    shifted = list(modes[1:]) + list(modes[:1])
    return rotate_mixed(turned, angles_deg - first.to(angles_deg.dtype), fill, shifted,
                        cubic_a_range, centre)


# Training rotations by TrainConfig.train_rotation_steps.
TRAIN_ROTATIONS = {1: rotate_mixed, 2: rotate_two_steps}


def jitter_sharpness(images: torch.Tensor, strength: float) -> torch.Tensor:
    """Blur or sharpen each image by a random amount: x + s (x - blur(x)), s uniform in
    [-strength, strength] per image (s = -1: a 3x3 binomial blur; s > 0: unsharp mask).
    Resamplers and lenses differ mostly in how sharp they leave edges; this makes that a
    nuisance the model has to ignore rather than a cue it can read."""
    if strength <= 0:
        return images
    n = len(images)
    blurred = _separable(images, torch.tensor([[0.25, 0.5, 0.25]], dtype=images.dtype,
                                              device=images.device).expand(n, 3))
    s = (torch.rand(n, 1, 1, 1, dtype=images.dtype, device=images.device) * 2 - 1) * strength
    return (images + s * (images - blurred)).clamp(0.0, 1.0)


def gaussian_blur(images: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Each image blurred by its own Gaussian of standard deviation ``sigmas[i]`` pixels
    (0 leaves it as it is), separable, replicate-padded."""
    radius = max(1, int(math.ceil(3 * float(sigmas.max()))))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    safe = sigmas.to(images.dtype).clamp_min(1e-3)[:, None]
    taps = torch.exp(-0.5 * (offsets[None, :] / safe) ** 2)
    return _separable(images, taps / taps.sum(dim=1, keepdim=True))


def _separable(images: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Each image filtered by its own odd-length 1-D kernel ``taps[i]`` along x, then y,
    replicate-padded: two batched products with per-image band matrices, each the taps
    spread over a fixed 0/1 map of which source pixel every tap of every output reads. A
    grouped convolution spent 0.4 ms of oneDNN set-up on 64 digits, a multiply-sum over
    unfolded windows 0.6-0.8 ms in 800 small ops; this is 0.13-0.27 ms in under 40."""
    n, _, h, w = images.shape
    taps = taps.to(images.dtype)
    along_x = (taps @ _tap_sources(taps.shape[1], w, images.device, images.dtype)).view(n, 1, w, w)
    along_y = along_x if h == w else \
        (taps @ _tap_sources(taps.shape[1], h, images.device, images.dtype)).view(n, 1, h, h)
    return along_y.transpose(-1, -2) @ (images @ along_x)


@functools.lru_cache(maxsize=32)
def _tap_sources(taps: int, size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(taps, size * size) 0/1: entry [k, src * size + dst] is 1 where tap k of output
    pixel dst reads source pixel src along a line of ``size`` pixels, the edge repeated."""
    radius = taps // 2
    source = (torch.arange(size)[None, :] + torch.arange(-radius, radius + 1)[:, None]).clamp(0, size - 1)
    reads = torch.zeros(taps, size, size)
    reads.scatter_(1, source[:, None, :], 1.0)
    return reads.reshape(taps, size * size).to(device, dtype)


def jitter_blur(images: torch.Tensor, max_sigma: float, fraction: float = 0.5) -> torch.Tensor:
    """Out of focus or shrunk and enlarged: ``fraction`` of the images get a Gaussian blur
    of sigma uniform in [0, ``max_sigma``] px, the rest stay sharp."""
    if max_sigma <= 0:
        return images
    n = len(images)
    drawn = torch.rand(n, device=images.device) * max_sigma
    sigmas = torch.where(torch.rand(n, device=images.device) < fraction, drawn,
                         torch.zeros_like(drawn))
    return gaussian_blur(images, sigmas)


def add_noise(images: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Gaussian noise of a per-image standard deviation uniform in [0, ``max_sigma``]
    (in [0, 1] pixel units: 10 grey levels is 10 / 255), clipped to [0, 1]."""
    if max_sigma <= 0:
        return images
    sigma = torch.rand(len(images), 1, 1, 1, device=images.device, dtype=images.dtype) * max_sigma
    return (images + sigma * torch.randn_like(images)).clamp(0.0, 1.0)


def jitter_gamma(images: torch.Tensor, strength: float) -> torch.Tensor:
    """x ** g per image, log g uniform in [-strength, strength]: ink of another darkness,
    a scanner's or camera's tone curve."""
    if strength <= 0:
        return images
    log_g = (torch.rand(len(images), 1, 1, 1, device=images.device, dtype=images.dtype) * 2 - 1) * strength
    return images.clamp_min(0.0) ** torch.exp(log_g)


def quantise_8bit(images: torch.Tensor) -> torch.Tensor:
    """Round each image to 8-bit grey levels, half of them by truncation, as image files
    hold them: libraries round (OpenCV) or truncate (Pillow's bicubic rotate), and a model
    that reads fine resampling detail notices one grey level."""
    truncate = torch.rand(len(images), 1, 1, 1, device=images.device) < 0.5
    offset = torch.where(truncate, 0.0, 0.5).to(images.dtype)
    return torch.floor(images.clamp(0.0, 1.0) * 255 + offset) / 255


# The JPEG standard's luminance quantisation table (ITU T.81, Annex K), quality 50.
JPEG_LUMINANCE = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]],
    dtype=torch.float32)


def _dct_matrix(n: int = 8) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    matrix = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    matrix[0] /= math.sqrt(2.0)
    return matrix.to(torch.float32)


def jpeg_tables(quality: torch.Tensor) -> torch.Tensor:
    """(N, 8, 8) quantisation tables for per-image JPEG qualities 1-100 (libjpeg's scaling)."""
    q = quality.to(torch.float32).clamp(1, 100)
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)[:, None, None]
    return torch.floor((JPEG_LUMINANCE.to(q.device) * scale + 50) / 100).clamp(1, 255)


def jpeg_compress(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """What a JPEG file at ``quality`` (per image) does to 8-bit images: 8x8 block DCT,
    coefficients rounded to the quality's table, back, rounded to 8 bits. Every channel
    goes through the luminance table (a grey JPEG exactly, up to libjpeg's integer DCT)."""
    n, c, h, w = images.shape
    pad_h, pad_w = (-h) % 8, (-w) % 8
    x = torch.round(images.clamp(0, 1) * 255) - 128
    x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")  # JPEG repeats the edge, too
    hb, wb = x.shape[2] // 8, x.shape[3] // 8
    blocks = x.reshape(n, c, hb, 8, wb, 8).permute(0, 1, 2, 4, 3, 5)
    dct = _dct_matrix().to(images.device, images.dtype)
    table = jpeg_tables(quality).to(images.dtype)[:, None, None, None]
    coefficients = dct @ blocks @ dct.T
    coefficients = torch.round(coefficients / table) * table
    back = (dct.T @ coefficients @ dct).permute(0, 1, 2, 4, 3, 5).reshape(n, c, hb * 8, wb * 8)
    return (torch.round(back[:, :, :h, :w] + 128).clamp(0, 255)) / 255


def jitter_jpeg(images: torch.Tensor, fraction: float,
                quality_range: tuple[float, float] | list[float] = (30, 95)) -> torch.Tensor:
    """JPEG artefacts on a random ``fraction`` of the images, each at a quality drawn
    uniformly from ``quality_range``."""
    if fraction <= 0:
        return images
    chosen = torch.nonzero(torch.rand(len(images), device=images.device) < fraction).flatten()
    if len(chosen) == 0:
        return images
    low, high = quality_range
    quality = torch.randint(int(low), int(high) + 1, (len(chosen),), device=images.device)
    out = images.clone()
    out[chosen] = jpeg_compress(images[chosen], quality)
    return out


def _radial_distance(n: int, height: int, width: int, device) -> torch.Tensor:
    """Each pixel's distance from the image centre (w/2, h/2), in units of the half-side."""
    ys = torch.arange(height, device=device, dtype=torch.float32) - height / 2
    xs = torch.arange(width, device=device, dtype=torch.float32) - width / 2
    r = torch.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2) / (min(height, width) / 2)
    return r.expand(n, 1, height, width)


def _white(n, h, w, device):
    level, spread = torch.rand(n, 1, 1, 1, device=device), torch.rand(n, 1, 1, 1, device=device) * 0.5
    return level + spread * (torch.rand(n, 1, h, w, device=device) * 2 - 1)


def _smooth(n, h, w, device):
    # A random field at a random coarseness: textures, smudges, uneven paper.
    cells = int(torch.randint(2, max(3, min(h, w) // 3) + 1, ()))
    field = torch.rand(n, 1, cells, cells, device=device)
    field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=False)
    level, contrast = torch.rand(n, 1, 1, 1, device=device), torch.rand(n, 1, 1, 1, device=device)
    return level + contrast * (field - 0.5)


def _constant(n, h, w, device):
    return torch.rand(n, 1, 1, 1, device=device).expand(n, 1, h, w).clone()


def _radial(n, h, w, device):
    # Shapes every turn about the centre leaves unchanged: discs, rings, blobs, ripples.
    r = _radial_distance(n, h, w, device)
    size = 0.15 + 0.8 * torch.rand(n, 1, 1, 1, device=device)
    kind = torch.randint(0, 4, (n, 1, 1, 1), device=device)
    width = 0.05 + 0.2 * torch.rand(n, 1, 1, 1, device=device)
    shapes = torch.stack([(r < size).float(), ((r - size).abs() < width).float(),
                          torch.exp(-0.5 * (r / size) ** 2), 0.5 + 0.5 * torch.cos(r * 20 * size)])
    pattern = shapes.gather(0, kind[None].expand(1, n, 1, h, w))[0]
    ground, ink = torch.rand(n, 1, 1, 1, device=device), torch.rand(n, 1, 1, 1, device=device)
    return ground + (ink - ground) * pattern


NO_UP_KINDS = (_white, _smooth, _constant, _radial)


def no_up_images(n: int, channels: int, height: int, width: int,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` images (N, C, H, W) in [0, 1] that have no up at all: noise of any grain, flat
    grey, and shapes symmetric about the centre. Trained toward a flat distribution, they
    teach a head with a distribution to say "no orientation" instead of guessing one."""
    kinds = torch.randint(0, len(NO_UP_KINDS), (n,))
    images = torch.empty(n, 1, height, width, device=device)
    for k, make in enumerate(NO_UP_KINDS):
        chosen = (kinds == k).nonzero().flatten().to(device)
        if len(chosen):
            images[chosen] = make(len(chosen), height, width, device)
    if channels > 1:  # a tint per image, so colour carries no up either
        images = images * (0.6 + 0.4 * torch.rand(n, channels, 1, 1, device=device))
    return images.clamp(0, 1)


@dataclass
class Augmentation:
    """Every training augmentation's setting, as TrainConfig holds them."""

    resamplers: tuple[str, ...] | list[str] = ("bilinear",)
    cubic_a: tuple[float, float] | list[float] = CUBIC_A_RANGE
    rotation_steps: int = 1
    shift: float = 0.0  # pixels, each axis
    scale: tuple[float, float] | list[float] = (1.0, 1.0)
    sharpness: float = 0.0
    blur: float = 0.0  # largest Gaussian sigma, pixels (half the images)
    gamma: float = 0.0
    noise: float = 0.0  # [0, 1] units
    quantise: bool = False
    jpeg: float = 0.0  # fraction of images
    jpeg_quality: tuple[float, float] | list[float] = (30, 95)

    def __post_init__(self) -> None:
        if self.rotation_steps not in TRAIN_ROTATIONS:
            raise ValueError(f"train_rotation_steps must be one of {sorted(TRAIN_ROTATIONS)}, "
                             f"got {self.rotation_steps}")
        for name, pair in (("train_cubic_a", self.cubic_a), ("train_scale", self.scale),
                           ("train_jpeg_quality", self.jpeg_quality)):
            if len(pair) != 2 or not pair[0] <= pair[1]:
                raise ValueError(f"{name} must be [low, high] with low <= high, got {list(pair)}")
        if not 0 <= self.blur <= 5:
            raise ValueError(f"train_blur must lie in [0, 5] pixels, got {self.blur}")
        if self.scale[0] <= 0:
            raise ValueError(f"train_scale must be positive, got {list(self.scale)}")
        if not (1 <= self.jpeg_quality[0] and self.jpeg_quality[1] <= 100):
            raise ValueError(f"train_jpeg_quality must lie in [1, 100], got {list(self.jpeg_quality)}")

    def __call__(self, images: torch.Tensor, angles_deg: torch.Tensor, fill: float = 0.0,
                 centre: str = PROTOCOL_CENTRE) -> torch.Tensor:
        """Upright float images (N, C, H, W) in [0, 1] -> rotated by ``angles_deg`` and
        put through every augmentation, in the order a real image meets them."""
        scale, shift = draw_pose(len(images), self.shift, self.scale, images.device)
        rotate = TRAIN_ROTATIONS[self.rotation_steps]
        x = rotate(images, angles_deg, fill, self.resamplers, self.cubic_a, centre, scale, shift)
        x = jitter_sharpness(x, self.sharpness)
        x = jitter_blur(x, self.blur)
        x = jitter_gamma(x, self.gamma)
        x = add_noise(x, self.noise)
        if self.quantise:
            x = quantise_8bit(x)
        return jitter_jpeg(x, self.jpeg, self.jpeg_quality)
