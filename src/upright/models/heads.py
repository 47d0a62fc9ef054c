"""Heads: how a network's output encodes an angle.

Every head has the same small interface, so nothing else branches on its kind:
``out_features``, ``forward(features) -> raw``, ``loss(raw, angle_deg)``,
``decode(raw) -> angle_deg in [-180, 180)`` and ``encode(angle_deg) -> raw``, the
ideal output for an angle (its loss is zero there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from upright.angles import DEG2RAD, circular_difference, from_unit_vector, to_unit_vector, wrap


class AngleHead(nn.Module):
    out_features: int = 1

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, self.out_features)

    def loss(self, raw: torch.Tensor, angle_deg: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, angle_deg: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class ActivationHead(AngleHead):
    """The published kind: one output squashed into an angle range, Huber loss in degrees.

    Not continuous at +-180: 179 and -179 look alike but need opposite outputs.
    """

    def __init__(self, in_features: int, delta: float = 3.0) -> None:
        super().__init__(in_features)
        self.delta = delta

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def target(self, angle_deg: torch.Tensor) -> torch.Tensor:
        """The label the output is trained towards (the published label convention)."""
        return angle_deg

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(features))

    def loss(self, raw: torch.Tensor, angle_deg: torch.Tensor) -> torch.Tensor:
        return F.huber_loss(raw[:, 0], self.target(angle_deg).to(raw.dtype), delta=self.delta)

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        return wrap(raw[:, 0].float())

    def encode(self, angle_deg: torch.Tensor) -> torch.Tensor:
        return self.target(angle_deg)[:, None].float()


class Softsign180(ActivationHead):
    """softsign(x) * 180, labels in [-180, 180) (the article's choice)."""

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return F.softsign(x) * 180.0


class Tanh180(ActivationHead):
    """tanh(x) * 180, labels in [-180, 180)."""

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) * 180.0


class Sigmoid360(ActivationHead):
    """sigmoid(x) * 360 with labels in [0, 360); predictions reported in [-180, 180)."""

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * 360.0

    def target(self, angle_deg: torch.Tensor) -> torch.Tensor:
        return torch.remainder(angle_deg, 360.0)


class Linear(ActivationHead):
    """No activation, labels in [-180, 180)."""

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return x


class UnitVector(AngleHead):
    """Two outputs read as (cos, sin); squared error to the unit vector; atan2 to decode.

    Continuous everywhere on the circle: 179.5 and -179.5 are 1 degree apart here too.
    """

    out_features = 2

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def loss(self, raw: torch.Tensor, angle_deg: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(raw.float(), self.encode(angle_deg), reduction="sum") / len(raw)

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        raw = raw.float()
        return from_unit_vector(raw[:, 0], raw[:, 1])

    def encode(self, angle_deg: torch.Tensor) -> torch.Tensor:
        cos, sin = to_unit_vector(angle_deg.float())
        return torch.stack([cos, sin], dim=1)


class AngleBins(AngleHead):
    """Classification over ``bins`` angle bins with wrapped-Gaussian soft labels.

    Loss: KL divergence from the soft label (zero at the true angle). Decode: the
    circular mean of the probabilities in a window around the most likely bin, so the
    angle is continuous and a second, far-away mode cannot drag it.
    """

    def __init__(self, in_features: int, bins: int = 360, sigma: float = 2.0,
                 window: float | None = None) -> None:
        self.out_features = bins
        super().__init__(in_features)
        self.sigma = sigma
        width = 360.0 / bins
        self.window_bins = max(1, math.ceil((window if window is not None else 3 * sigma) / width))
        self.register_buffer("centres", -180.0 + width * (torch.arange(bins) + 0.5),
                             persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def soft_labels(self, angle_deg: torch.Tensor) -> torch.Tensor:
        diff = circular_difference(self.centres[None, :], angle_deg.float()[:, None])
        weights = torch.exp(-0.5 * (diff / self.sigma) ** 2)
        return weights / weights.sum(dim=1, keepdim=True)

    def loss(self, raw: torch.Tensor, angle_deg: torch.Tensor) -> torch.Tensor:
        target = self.soft_labels(angle_deg)
        log_probs = F.log_softmax(raw.float(), dim=1)
        return F.kl_div(log_probs, target, reduction="batchmean")

    def flat_loss(self, raw: torch.Tensor) -> torch.Tensor:
        """KL divergence from the flat distribution: the target of an image with no up."""
        log_probs = F.log_softmax(raw.float(), dim=1)
        return -log_probs.mean(dim=1).mean() - math.log(raw.shape[1])

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        probs = F.softmax(raw.float(), dim=1)
        peak = probs.argmax(dim=1, keepdim=True)
        offsets = torch.arange(-self.window_bins, self.window_bins + 1, device=raw.device)
        idx = (peak + offsets[None, :]) % probs.shape[1]
        weights = probs.gather(1, idx)
        rad = self.centres[idx] * DEG2RAD
        return from_unit_vector((weights * torch.cos(rad)).sum(1), (weights * torch.sin(rad)).sum(1))

    def encode(self, angle_deg: torch.Tensor) -> torch.Tensor:
        return torch.log(self.soft_labels(angle_deg).clamp_min(1e-30))


HEADS: dict[str, type[AngleHead]] = {
    "softsign180": Softsign180,
    "tanh180": Tanh180,
    "sigmoid360": Sigmoid360,
    "linear": Linear,
    "unitvec": UnitVector,
    "bins": AngleBins,
}
