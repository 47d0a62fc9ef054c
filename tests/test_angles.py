import numpy as np
import pytest
import torch

from upright.angles import circular_difference, circular_error, circular_mean, wrap


@pytest.mark.parametrize("value, expected", [
    (0, 0), (179, 179), (180, -180), (-180, -180), (181, -179), (-181, 179), (360, 0),
    (540, -180), (-725, -5),
])
def test_wrap_lands_in_half_open_range(value, expected):
    assert wrap(float(value)) == pytest.approx(expected)


def test_179_and_minus_179_are_two_degrees_apart():
    assert circular_difference(179.0, -179.0) == pytest.approx(-2.0)
    assert circular_difference(-179.0, 179.0) == pytest.approx(2.0)
    assert circular_error(np.array([179.0]), np.array([-179.0]))[0] == pytest.approx(2.0)


def test_torch_and_numpy_agree():
    a = np.array([-179.5, 10.0, 170.0, 359.0])
    b = np.array([179.5, -350.0, -170.0, 1.0])
    expected = circular_difference(a, b)
    got = circular_difference(torch.tensor(a), torch.tensor(b)).numpy()
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(expected, [1.0, 0.0, -20.0, -2.0])


def test_circular_mean_across_the_seam():
    assert abs(circular_difference(circular_mean(np.array([170.0, -170.0])), 180.0)) < 1e-9
    assert circular_mean(torch.tensor([[10.0, 20.0, 30.0]])).item() == pytest.approx(20.0)
