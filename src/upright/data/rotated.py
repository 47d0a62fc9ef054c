"""Rotated (image, angle) sets: seeded protocol angles, and on-the-fly training batches.

Nothing here rotates pixels: sets are (source index, angle) pairs, and the model side
rotates batches with ``upright.geometry.rotate_batch`` on the training device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

# The published fixed-angle evaluation set.
FIXED_ANGLES = (-175, -150, -120, -90, -60, -25, 0, 25, 60, 90, 120, 150, 175)

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Counter-based hash: the same (seed, index) always gives the same number."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def protocol_angles(source_ids: np.ndarray, angles_per_image: int, seed: int) -> np.ndarray:
    """Integer angles in [-180, 180), shape (len(source_ids), angles_per_image).

    Each angle depends only on (seed, source id, k): a subset of the images gets the
    same angles as in the full set.
    """
    ids = np.asarray(source_ids, dtype=np.uint64)[:, None]
    k = np.arange(angles_per_image, dtype=np.uint64)[None, :]
    key = _splitmix64(np.full(1, seed, dtype=np.uint64) + np.uint64(0x5EED))
    counters = ids * np.uint64(1 << 16) + k  # up to 65,536 angles per image
    hashed = _splitmix64(counters ^ key)
    return (hashed % np.uint64(360)).astype(np.int64) - 180


@dataclass
class RotatedSet:
    """A fixed evaluation set: for item i, rotate ``images[source[i]]`` by ``angles[i]``."""

    images: np.ndarray  # uint8 upright source images (N, H, W[, C])
    source: np.ndarray  # (M,) index into images
    angles: np.ndarray  # (M,) degrees, counter-clockwise

    def __len__(self) -> int:
        return len(self.source)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self), batch_size):
            stop = start + batch_size
            yield (torch.from_numpy(self.images[self.source[start:stop]]),
                   torch.from_numpy(self.angles[start:stop].astype(np.float32)))


def protocol_set(images: np.ndarray, source_ids: np.ndarray, angles_per_image: int,
                 seed: int) -> RotatedSet:
    """The published protocol: each image at ``angles_per_image`` seeded integer angles."""
    angles = protocol_angles(source_ids, angles_per_image, seed)
    source = np.repeat(np.arange(len(images)), angles_per_image)
    return RotatedSet(images, source, angles.reshape(-1))


def fixed_angle_set(images: np.ndarray, angles: tuple[int, ...] = FIXED_ANGLES) -> RotatedSet:
    """Every image at every angle of a fixed list."""
    source = np.repeat(np.arange(len(images)), len(angles))
    return RotatedSet(images, source, np.tile(np.asarray(angles, dtype=np.int64), len(images)))


class TrainBatches(torch.utils.data.IterableDataset):
    """Endless-looking epochs of (upright uint8 images, random angles), shuffled and seeded.

    One epoch shows every training image ``angles_per_epoch`` times, each time at a
    fresh angle, so its size matches the published protocol's materialised set
    (20 angles per image) without ever storing rotated copies.
    """

    def __init__(self, images: np.ndarray, batch_size: int, angles_per_epoch: int = 20,
                 seed: int = 0, integer_angles: bool = True) -> None:
        super().__init__()
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.batch_size = batch_size
        self.angles_per_epoch = angles_per_epoch
        self.seed = seed
        self.integer_angles = integer_angles
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.images) * self.angles_per_epoch // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        self.epoch += 1
        n = len(self.images) * self.angles_per_epoch
        order = torch.randperm(n, generator=generator) % len(self.images)
        if self.integer_angles:
            angles = torch.randint(-180, 180, (n,), generator=generator).to(torch.float32)
        else:
            angles = torch.rand(n, generator=generator) * 360.0 - 180.0
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield self.images[idx], angles[start:start + self.batch_size]


def to_float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]."""
    x = images.to(torch.float32) / 255.0
    return x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)


def to_uint8_images(images: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [0, 1] -> uint8 (N, H, W), or (N, H, W, C) for colour: the
    inverse of ``to_float_images``, rounding and clipping."""
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


class SetBatches(torch.utils.data.IterableDataset):
    """A fixed rotated set as a stream of (images, angles) batches, for a DataLoader."""

    def __init__(self, rotated: RotatedSet, batch_size: int) -> None:
        super().__init__()
        self.rotated = rotated
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.rotated) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.rotated.batches(self.batch_size)
