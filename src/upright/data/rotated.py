"""Rotated (image, angle) sets: seeded protocol angles, and on-the-fly training batches.

Nothing here rotates pixels: sets are (source index, angle) pairs, and the model side
rotates batches with ``upright.geometry.rotate_batch`` on the training device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from upright.data.workers import worker_options

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


class EpochPlan:
    """Which (image, angle) samples make each training batch of an epoch, for each rank.

    One epoch shows every training image ``angles_per_epoch`` times, each time at a fresh
    angle, so its size matches the published protocol's materialised set (20 angles per
    image) without ever storing rotated copies. The order and the angles come from one
    stream seeded by (seed, epoch), the same on every rank; under DDP each global batch of
    ``batch_size`` is cut into ``world`` equal, disjoint parts and rank r trains on part r.
    So ranks never share a sample or an angle, and together they train on exactly the
    samples one process would (one process: the plan is the single-process one).
    """

    def __init__(self, n_images: int, batch_size: int, angles_per_epoch: int = 20, seed: int = 0,
                 integer_angles: bool = True, rank: int = 0, world: int = 1) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in a world of {world}")
        if batch_size < world:
            raise ValueError(f"batch size {batch_size} cannot be shared by {world} processes")
        self.n_images, self.batch_size, self.angles_per_epoch = n_images, batch_size, angles_per_epoch
        self.seed, self.integer_angles, self.rank, self.world = seed, integer_angles, rank, world
        self._cached: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        """Batches per epoch on this rank (a last global batch too small to share is dropped)."""
        n = self.n_images * self.angles_per_epoch
        full, rest = divmod(n, self.batch_size)
        return full + (1 if rest >= self.world else 0)

    def samples(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The epoch's whole order (image index per sample) and angles, as one process sees it."""
        if self._cached is None or self._cached[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            n = self.n_images * self.angles_per_epoch
            order = torch.randperm(n, generator=generator) % self.n_images
            if self.integer_angles:
                angles = torch.randint(-180, 180, (n,), generator=generator).to(torch.float32)
            else:
                angles = torch.rand(n, generator=generator) * 360.0 - 180.0
            self._cached = (epoch, order, angles)
        return self._cached[1], self._cached[2]

    def positions(self, epoch: int, batch: int) -> torch.Tensor:
        """The sample positions (into the epoch's order) of this rank's part of a batch."""
        n = self.n_images * self.angles_per_epoch
        start = batch * self.batch_size
        size = min(self.batch_size, n - start)
        part = size // self.world
        first = start + self.rank * part
        return torch.arange(first, first + part)

    def batch(self, epoch: int, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image indices, angles, sample positions) of this rank's part of a batch."""
        order, angles = self.samples(epoch)
        positions = self.positions(epoch, batch)
        return order[positions], angles[positions], positions


class EpochSampler(torch.utils.data.Sampler):
    """Yields (epoch, batch) keys; Lightning calls ``set_epoch`` before each epoch, so a
    batch is a pure function of its key, whichever DataLoader worker reads it."""

    def __init__(self, batches: int) -> None:
        self.batches = batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, b) for b in range(self.batches))


class TrainBatches(torch.utils.data.Dataset):
    """Training batches: key (epoch, batch) -> (upright uint8 images, angles, sample
    positions). ``images`` is an array in memory or anything whose ``read(indices)`` gives
    them (a streamed folder: files read and prepared in DataLoader workers). ``gaps``: the
    plan's image indices that have no row in ``images`` (files that could not be read,
    ``Subset.gaps``), left out of each batch as a streamed file that fails is."""

    def __init__(self, images, plan: EpochPlan, gaps: np.ndarray | None = None) -> None:
        super().__init__()
        self.images = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) \
            else images
        self.plan = plan
        self.gaps = torch.as_tensor(np.zeros(0, np.int64) if gaps is None else gaps, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        indices, angles, positions = self.plan.batch(*key)
        if len(self.gaps):
            keep = ~torch.isin(indices, self.gaps)
            indices, angles, positions = indices[keep], angles[keep], positions[keep]
            indices = indices - torch.searchsorted(self.gaps, indices)  # drawn place -> row
        if isinstance(self.images, torch.Tensor):
            return self.images[indices], angles, positions
        pixels, readable = self.images.read(indices.numpy())
        keep = torch.from_numpy(readable)
        return torch.from_numpy(pixels), angles[keep], positions[keep]

    def loader(self, workers: int = 0) -> torch.utils.data.DataLoader:
        """A DataLoader over one rank's batches, in order, ``workers`` reading ahead."""
        # Its own generator: starting workers must not draw from the global one, which the
        # model's initialisation and augmentation use (workers would change the training).
        return torch.utils.data.DataLoader(self, batch_size=None, sampler=EpochSampler(len(self)),
                                           num_workers=workers, persistent_workers=workers > 0,
                                           prefetch_factor=4 if workers else None,
                                           generator=torch.Generator().manual_seed(self.plan.seed),
                                           **worker_options(workers))


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
