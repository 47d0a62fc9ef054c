"""bench/lean.py's split of the error into each image's own offset and the rest."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
from lean import largest_coverage, lean_report  # noqa: E402

from upright.data.rotated import RotatedSet  # noqa: E402


def test_a_lean_per_image_is_found_and_an_oracle_that_knows_it_is_right():
    rng = np.random.default_rng(0)
    images, turns = 200, 20
    source = np.repeat(np.arange(images), turns)
    lean = rng.normal(0, 6, images)
    error = lean[source] + rng.normal(0, 1, len(source))
    error[::97] = 175.0  # a few flips: left out of the offsets
    items = RotatedSet(np.zeros((images, 4, 4), np.uint8), source, np.zeros(len(source)))
    report = lean_report(items, error, np.full(len(source), 0.7))
    assert report["images"] == images
    assert abs(report["offset_std"] - lean.std()) < 0.3
    assert abs(report["within_image_std"] - 1.0) < 0.1
    assert report["between_image_variance_share"] > 0.95
    assert report["within_5"] < 0.7 and report["oracle_within_5"] > 0.98
    assert report["by_lean"]["over_5"]["within_5"] < report["by_lean"]["under_2"]["within_5"]


def test_largest_coverage_takes_the_most_confident_first():
    confidence = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    hit = np.array([True, True, False, True, False])
    assert largest_coverage(confidence, hit, 1.0) == 0.4
    assert largest_coverage(confidence, hit, 0.75) == 0.8
    assert largest_coverage(confidence, ~hit, 0.99) == 0.0
