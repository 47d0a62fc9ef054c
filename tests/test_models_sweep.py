"""Every backbone x head x input format builds, trains a step and decodes angles (timm-style)."""

from __future__ import annotations

import pytest
import torch

from upright.models.backbones import BACKBONES
from upright.models.heads import HEADS
from upright.models.model import AngleModel, ModelSpec

FORMATS = [(1, 28, 28), (3, 36, 36)]  # grey MNIST-size, and colour of another size


@pytest.mark.parametrize("channels, height, width", FORMATS)
@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_backbone_and_head_trains_a_step_and_decodes_angles(backbone, head, channels, height, width):
    torch.manual_seed(0)
    spec = ModelSpec(backbone=backbone, head=head, channels=channels, height=height, width=width,
                     mean=[0.0] * channels, std=[1.0] * channels)
    model = AngleModel(spec)
    images = torch.rand(4, channels, height, width)
    angles = torch.tensor([-170.0, -30.0, 45.0, 179.0])
    raw = model(images)
    loss = model.head.loss(raw, angles)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
    model.eval()
    with torch.no_grad():
        decoded = model.predict_angles(images)
    assert decoded.shape == (4,) and torch.isfinite(decoded).all()
    assert (decoded >= -180).all() and (decoded <= 360).all()  # sigmoid360 decodes to [0, 360)
