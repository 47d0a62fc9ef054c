"""The circle mask must hide every trace of a rotation's corners from the network."""

import numpy as np
import pytest
import torch

from upright.geometry import rotate_batch
from upright.models.model import AngleModel, ModelSpec


@pytest.mark.parametrize("size", [(28, 28), (64, 64), (48, 40)])
def test_circle_masked_rotations_of_a_flat_image_are_identical(size):
    # A flat grey image rotated by any angle differs only in its black corners; once
    # masked, what the backbone sees must not depend on the angle at all.
    h, w = size
    model = AngleModel(ModelSpec(backbone="compact", head="bins", height=h, width=w,
                                 input_mask="circle"))
    angles = torch.tensor([0.0, 7.0, 33.5, 45.0, 90.0, 131.0, -170.0, 179.0])
    flat = torch.full((len(angles), 1, h, w), 0.6)
    seen = model.masked(rotate_batch(flat, angles)).numpy()
    np.testing.assert_allclose(seen, np.broadcast_to(seen[:1], seen.shape), atol=1e-5)
    assert seen.max() == pytest.approx(0.6, abs=1e-5)  # the content itself is kept
    assert seen[0, 0, 0, 0] == 0.0  # corners are black


def test_circle_mask_changes_the_models_output_and_none_leaves_images_alone():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 28, 28)
    plain = AngleModel(ModelSpec(backbone="compact", head="unitvec")).eval()
    assert torch.equal(plain.masked(x), x)
    masked = AngleModel(ModelSpec(backbone="compact", head="unitvec", input_mask="circle")).eval()
    masked.load_state_dict(plain.state_dict())
    corners_changed = x.clone()
    corners_changed[..., 0, 0] = 1.0 - corners_changed[..., 0, 0]
    # With the mask, a corner pixel cannot change the prediction; without it, it does.
    assert torch.allclose(masked(x), masked(corners_changed))
    assert not torch.allclose(plain(x), plain(corners_changed))


def test_unknown_mask_is_a_clear_error():
    with pytest.raises(ValueError, match="input_mask"):
        AngleModel(ModelSpec(backbone="compact", head="bins", input_mask="square"))
