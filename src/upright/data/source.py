"""What every source returns, and the splits made from it (by source image, never after rotation)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from upright.errors import DatasetError


@dataclass
class SourceData:
    """Upright images (uint8, (N, H, W) or (N, H, W, C)) with a group id each.

    ``is_test`` marks the images of the source's predefined test split (MNIST's t10k
    file, Olivetti's last 12 people); the rest is for training and validation.
    """

    name: str
    images: np.ndarray
    groups: np.ndarray
    is_test: np.ndarray
    group_kind: str
    default_excluded_groups: tuple[int, ...] = ()
    group_names: dict[int, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # files that could not be read
    # Images whose file was listed but could not be read (a folder read into memory holds
    # a blank in their place): they keep their place while the splits are drawn, so a
    # folder splits alike in memory and streamed, and leave each split after the draw.
    unreadable: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8:
            raise TypeError(f"{self.name}: images must be uint8, got {self.images.dtype}")
        if not (len(self.images) == len(self.groups) == len(self.is_test)):
            raise ValueError(f"{self.name}: images, groups and is_test differ in length")
        if self.unreadable is not None and len(self.unreadable) != len(self.images):
            raise ValueError(f"{self.name}: unreadable and images differ in length")


@dataclass
class Subset:
    """Some images of a source, with their indices into it."""

    images: np.ndarray
    groups: np.ndarray
    indices: np.ndarray
    # Where files drawn into this split that could not be read stood, as positions in the
    # order drawn: training plans its epochs over the drawn images and leaves these out of
    # each batch, as a streamed folder leaves a file that fails when read.
    gaps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.images)

    @property
    def drawn(self) -> int:
        """The images drawn into this split, read or not: the same count whether a folder
        was read into memory (a damaged file leaves at once) or streamed (when first read)."""
        return len(self) + len(self.gaps)

    def first_drawn(self, count: int) -> Subset:
        """The images of the first ``count`` drawn (those of them that were read)."""
        rows = count - int(np.searchsorted(self.gaps, count))
        return Subset(self.images[:rows], self.groups[:rows], self.indices[:rows],
                      self.gaps[self.gaps < count])


@dataclass
class Splits:
    train: Subset
    val: Subset
    test: Subset


def split_source(
    source: SourceData,
    val_fraction: float = 0.2,
    seed: int = 0,
    excluded_groups: Sequence[int] | None = None,
    limit: int | None = None,
) -> Splits:
    """Exclude groups, then split the non-test images into train/val by source image.

    ``limit`` keeps only the first ``limit`` train+val and test images (for quick runs
    and tests); it is applied after exclusion so counts stay predictable.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    excluded = source.default_excluded_groups if excluded_groups is None else tuple(excluded_groups)
    if excluded_groups and source.group_kind == "file":
        raise DatasetError(f"{source.name}: --exclude names MNIST digits or Olivetti people; a "
                           "folder's images are not in groups (move the files out instead)")
    unknown = sorted(set(excluded) - set(np.unique(source.groups).tolist()))
    if unknown:
        raise DatasetError(f"{source.name}: no {source.group_kind} {unknown[0]} to exclude "
                           f"(its {source.group_kind}s: {source.groups.min()}-{source.groups.max()})")
    keep = ~np.isin(source.groups, np.asarray(excluded, dtype=source.groups.dtype))
    pool = np.flatnonzero(keep & ~source.is_test)
    test = np.flatnonzero(keep & source.is_test)
    if limit is not None:
        pool, test = pool[:limit], test[:limit]
    if len(pool) == 0:
        raise DatasetError(f"{source.name}: no training images left after excluding {excluded}")
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(pool)
    n_val = int(round(val_fraction * len(pool)))
    val, train = np.sort(shuffled[:n_val]), np.sort(shuffled[n_val:])

    def subset(idx: np.ndarray) -> Subset:
        bad = np.zeros(len(idx), dtype=bool) if source.unreadable is None else source.unreadable[idx]
        kept = idx[~bad]
        return Subset(source.images[kept], source.groups[kept], kept, np.flatnonzero(bad))

    return Splits(subset(train), subset(val), subset(test))


def in_memory(subset: Subset, workers: int = 0) -> Subset:
    """The subset with its images decoded into an array: a streamed folder's images are
    read (``workers`` processes) and files that cannot be read leave the subset."""
    if isinstance(subset.images, np.ndarray):
        return subset
    pixels, readable, _ = subset.images.load(workers)
    places = np.delete(np.arange(subset.drawn), subset.gaps)  # each row's place in the draw
    gaps = np.union1d(subset.gaps, places[~readable]).astype(np.int64)
    return Subset(pixels[readable], subset.groups[readable], subset.indices[readable], gaps)

