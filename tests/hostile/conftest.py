"""The model the hostile tests correct with: the shipped MNIST one (no training needed)."""

from __future__ import annotations

import pytest

from upright.shipped import shipped_model


@pytest.fixture(scope="session")
def model() -> str:
    folder = shipped_model("mnist")
    if folder is None:
        pytest.skip("the shipped mnist model is not installed")
    return str(folder)
