"""Shared fixtures: the local data mirror and one tiny trained run reused by many tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_LOCAL_MIRROR = REPO.parent / "shared" / "data"

# Tests read the real datasets from a mirror folder; default to the one beside the repo.
if not os.environ.get("UPRIGHT_DATA_MIRROR") and _LOCAL_MIRROR.is_dir():
    os.environ["UPRIGHT_DATA_MIRROR"] = str(_LOCAL_MIRROR)


def _have_mirror(*parts: str) -> bool:
    mirror = os.environ.get("UPRIGHT_DATA_MIRROR")
    return bool(mirror) and Path(mirror, *parts).exists()


needs_mnist = pytest.mark.skipif(not _have_mirror("mnist"),
                                 reason="UPRIGHT_DATA_MIRROR with mnist/ not available")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A published-network run on 800 MNIST images, trained for a few short epochs."""
    if not _have_mirror("mnist"):
        pytest.skip("UPRIGHT_DATA_MIRROR with mnist/ not available")
    from upright.experiments import train_run
    from upright.recipes import make_config

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    config = make_config("mnist-published", {
        "limit": 800, "max_epochs": 4, "angles_per_epoch": 8, "val_angles": 2,
        "test_angles": 4, "train_eval_images": 200, "batch_size": 128, "seed": 3,
    })
    train_run(config, run_dir, progress=False)
    return run_dir
