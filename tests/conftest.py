"""Shared fixtures: the local data mirror, and one tiny trained run on synthetic glyphs
(no dataset needed) reused by the correction, report and checkpoint tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import TINY_RUN, write_glyph_folder

REPO = Path(__file__).resolve().parents[1]
_LOCAL_MIRROR = REPO.parent / "shared" / "data"

# Tests read the real datasets from a mirror folder; default to the one beside the repo.
if not os.environ.get("UPRIGHT_DATA_MIRROR") and _LOCAL_MIRROR.is_dir():
    os.environ["UPRIGHT_DATA_MIRROR"] = str(_LOCAL_MIRROR)


@pytest.fixture(scope="session")
def glyph_folder(tmp_path_factory) -> Path:
    """60 upright synthetic glyphs as PNG files: a folder dataset any machine can make."""
    return write_glyph_folder(tmp_path_factory.mktemp("data") / "glyphs", count=60)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, glyph_folder) -> Path:
    """The published network trained for four short epochs on the glyph folder."""
    from upright.experiments import train_run
    from upright.recipes import make_config

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    config = make_config("mnist-published", {**TINY_RUN, "dataset": f"folder:{glyph_folder}"})
    train_run(config, run_dir, progress=False)
    return run_dir
