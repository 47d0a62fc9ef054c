"""bench/resamplers.py: every resampler's version of the same items, angles unchanged."""

import sys
from pathlib import Path

import numpy as np
import pytest

from upright.data.rotated import fixed_angle_set
from upright.evaluation import OTHER_RESAMPLERS
from upright.geometry import RESAMPLERS

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def resamplers_module():
    sys.path.insert(0, str(BENCH))  # the bench script imports its sibling accuracy.py
    try:
        import resamplers
        yield resamplers
    finally:
        sys.path.remove(str(BENCH))


def test_every_resampler_rotates_the_same_items_by_the_same_angles(resamplers_module):
    images = np.zeros((2, 21, 21), np.uint8)
    images[:, 3:9, 8:13] = 255  # a block above the centre
    test = fixed_angle_set(images, (-120, 0, 35, 90))
    sets = resamplers_module.resampled_sets(test)
    assert set(sets) == {f"ours_{m}" for m in RESAMPLERS} | set(OTHER_RESAMPLERS)
    def centroids(images: np.ndarray) -> np.ndarray:
        weights = images.astype(np.float64)
        rows, cols = np.mgrid[:21, :21]
        total = weights.sum(axis=(1, 2))
        return np.stack([(weights * rows).sum(axis=(1, 2)) / total,
                         (weights * cols).sum(axis=(1, 2)) / total], axis=1)

    reference = centroids(sets["ours_bilinear"].images)
    for name, rotated in sets.items():
        assert rotated.images.shape == (8, 21, 21) and rotated.images.dtype == np.uint8, name
        np.testing.assert_array_equal(rotated.angles, test.angles)
        # Same geometry: the block's centre of mass lands within a third of a pixel of ours,
        # however much each resampler blurs or rings at the edges.
        assert np.abs(centroids(rotated.images) - reference).max() < 0.33, name
    # At 90 degrees the block sits left of the centre (counter-clockwise), for every resampler.
    quarter = int(np.flatnonzero(test.angles == 90)[0])
    for rotated in sets.values():
        assert rotated.images[quarter][8:13, 3:9].mean() > 200
