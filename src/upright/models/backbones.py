"""Backbones: plain ``nn.Module``s mapping (N, C, H, W) images to (N, out_features)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


def _glorot(module: nn.Module) -> None:
    """Keras' default initialisation (glorot uniform, zero bias), for faithful re-creations."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


class SeedNet(nn.Module):
    """The published network (Keras layer order, 'valid' convolutions):

    Conv(16,3x3,relu) - Conv(32,3x3,relu) - MaxPool 2 - Conv(64,3x3,relu) - Dropout -
    Flatten - Dense(500, relu) - BatchNorm - Dropout - Dense(10, relu). The head adds
    the last Dense layer and the output activation.
    """

    def __init__(self, in_channels: int, height: int, width: int,
                 conv: Sequence[int] = (16, 32, 64), dense: Sequence[int] = (500, 10),
                 dropout: float = 0.3, bn_momentum: float = 0.99) -> None:
        super().__init__()
        c1, c2, c3 = conv
        d1, d2 = dense
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3), nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 3), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3), nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Flatten(),
        )
        flat = self.features(torch.zeros(1, in_channels, height, width)).shape[1]
        self.dense = nn.Sequential(
            nn.Linear(flat, d1), nn.ReLU(inplace=True),
            # Keras BatchNormalization: momentum 0.99 (torch counts 1 - that), eps 1e-3.
            nn.BatchNorm1d(d1, momentum=1.0 - bn_momentum, eps=1e-3),
            nn.Dropout(dropout),
            nn.Linear(d1, d2), nn.ReLU(inplace=True),
        )
        self.out_features = d2
        _glorot(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.features(x))


def seed_mnist(in_channels: int, height: int, width: int, **options) -> nn.Module:
    """The article's MNIST network exactly."""
    return SeedNet(in_channels, height, width, **options)


def seed_faces(in_channels: int, height: int, width: int, **options) -> nn.Module:
    """The article's faces network: "the MNIST network with wider dense layers".

    The article gives no sizes; we chose Dense(1024) - Dense(64): twice the first
    width and, because 28x28x64 = 50,176 features come out of a 64x64 input, a wider
    bottleneck than the MNIST net's 10 units.
    """
    options.setdefault("dense", (1024, 64))
    return SeedNet(in_channels, height, width, **options)


def _conv(cin: int, cout: int, stride: int = 1, batchnorm: bool = True) -> list[nn.Module]:
    if not batchnorm:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU(inplace=True)]
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class CompactNet(nn.Module):
    """Our small backbone: 3x3 conv-BN-ReLU stages, strided convolutions instead of
    pooling, then one dense layer. Position stays in the features (no global pooling),
    which an angle needs; BatchNorm everywhere lets it train fast at a high learning rate.

    ``widths`` gives one stage per entry: a stride-1 conv, then (for all but the last)
    a stride-2 conv to the next width.
    """

    def __init__(self, in_channels: int, height: int, width: int,
                 widths: Sequence[int] = (32, 64, 96), dense: int = 192, dropout: float = 0.1,
                 batchnorm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i, w in enumerate(widths):
            layers += _conv(cin, w, batchnorm=batchnorm)
            if i < len(widths) - 1:
                layers += _conv(w, widths[i + 1], stride=2, batchnorm=batchnorm)
            cin = widths[i + 1] if i < len(widths) - 1 else w
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        flat = self.features(torch.zeros(1, in_channels, height, width)).shape[1]
        self.dense = nn.Sequential(nn.Dropout(dropout), nn.Linear(flat, dense),
                                   nn.BatchNorm1d(dense), nn.ReLU(inplace=True))
        self.out_features = dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.features(x))


def compact(in_channels: int, height: int, width: int, **options) -> nn.Module:
    """Our backbone for 28x28 digits (and, with more stages, larger inputs)."""
    if "widths" not in options and min(height, width) > 40:
        options["widths"] = (16, 32, 48, 64)  # one more stride-2 stage for 64x64 faces
    return CompactNet(in_channels, height, width, **options)


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "seed_mnist": seed_mnist,
    "seed_faces": seed_faces,
    "compact": compact,
}
