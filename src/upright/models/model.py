"""The angle model: normalisation + backbone + head, built from a JSON-able spec."""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from upright.angles import circular_mean
from upright.confidence import AngleBelief
from upright.models.backbones import BACKBONES
from upright.models.framing import FRAMINGS
from upright.models.heads import HEADS, AngleHead
from upright.prepare import LEVELS
from upright.settings import setting


def gaussian_kernel(sigma: float, channels: int) -> torch.Tensor:
    """(channels, 1, k, k) normalised Gaussian, k covering 3 sigma each side (1x1 at 0)."""
    radius = max(0, math.ceil(3 * sigma)) if sigma > 0 else 0
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k1 = torch.exp(-0.5 * (t / sigma) ** 2) if sigma > 0 else torch.ones(1)
    k1 = k1 / k1.sum()
    return (k1[:, None] * k1[None, :]).expand(channels, 1, len(t), len(t)).contiguous()


def _no_mask(height: int, width: int) -> torch.Tensor:
    return torch.ones(1, 1, height, width)


def _circle_mask(height: int, width: int) -> torch.Tensor:
    """The disc about the protocol's centre of rotation (w / 2, h / 2) whose pixels every
    rotation about it fills from inside the image (bilinear taps included)."""
    y = torch.arange(height, dtype=torch.float32)[:, None] - height / 2
    x = torch.arange(width, dtype=torch.float32)[None, :] - width / 2
    radius = min(height, width) / 2 - 1  # one pixel in: bilinear edges blend in the fill
    return (x**2 + y**2 <= radius**2).to(torch.float32)[None, None]


INPUT_MASKS = {"none": _no_mask, "circle": _circle_mask}


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model without pickles: names, options, input format."""

    backbone: str = setting("seed_mnist", section="model", choices=sorted(BACKBONES),
                            help="feature extractor (upright.models.backbones)")
    head: str = setting("softsign180", section="model", choices=sorted(HEADS),
                        help="output head and its loss (upright.models.heads)")
    backbone_options: dict[str, Any] = setting(
        factory=dict, section="model", flag="backbone-option", metavar="KEY=VALUE",
        help="backbone constructor option, repeatable, e.g. dropout=0.2")
    head_options: dict[str, Any] = setting(
        factory=dict, section="model", flag="head-option", metavar="KEY=VALUE",
        help="head option, repeatable, e.g. delta=3 or bins=720")
    channels: int = setting(1, section="model", low=1, high=4, derived=True,
                            help="input channels (from the data)")
    height: int = setting(28, section="model", low=1, high=4096, derived=True,
                          help="input height (from the data)")
    width: int = setting(28, section="model", low=1, high=4096, derived=True,
                         help="input width (from the data)")
    mean: list[float] = setting(factory=lambda: [0.0], section="model",
                                help="per-channel mean subtracted after scaling pixels to [0, 1]")
    std: list[float] = setting(factory=lambda: [1.0], section="model", above=0.0,
                               help="per-channel divisor after the mean")
    input_mask: str = setting("none", section="model", choices=sorted(INPUT_MASKS),
                              help="circle: black outside the inscribed circle in every path, "
                                   "so a rotation's corners tell nothing")
    aspect: str = setting("crop", section="model", choices=["crop", "pad"], derived=True,
                          help="how non-square images are squared (from the data's setting)")
    levels: str = setting("raw", section="model", choices=sorted(LEVELS),
                          help="grey-level rule in front of the network, in every path: raw, "
                               "polarity (negatives inverted) or autocontrast (and stretched)")
    input_blur: float = setting(0.0, section="model", low=0.0, high=5.0, metavar="SIGMA",
                                help="fixed Gaussian blur after the levels, in every path (pixels)")
    framing: str = setting("none", section="model", choices=sorted(FRAMINGS),
                           help="after the levels, in every path: none, or moments (ink off "
                                "centre, too small or too large moved and scaled into the band "
                                "training covers; the rest untouched)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class AngleModel(nn.Module):
    """Takes float images in [0, 1], (N, C, H, W); returns the head's raw output."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        if spec.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {spec.backbone!r}; known: {', '.join(BACKBONES)}")
        if spec.head not in HEADS:
            raise ValueError(f"unknown head {spec.head!r}; known: {', '.join(HEADS)}")
        self.spec = spec
        self.backbone = BACKBONES[spec.backbone](spec.channels, spec.height, spec.width,
                                                 **spec.backbone_options)
        self.head: AngleHead = HEADS[spec.head](self.backbone.out_features, **spec.head_options)
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        if spec.input_mask not in INPUT_MASKS:
            raise ValueError(f"unknown input_mask {spec.input_mask!r}; known: {', '.join(INPUT_MASKS)}")
        self.register_buffer("input_mask", INPUT_MASKS[spec.input_mask](spec.height, spec.width),
                             persistent=False)
        if spec.levels not in LEVELS:
            raise ValueError(f"unknown levels {spec.levels!r}; known: {', '.join(LEVELS)}")
        self.levels = LEVELS[spec.levels]
        if spec.framing not in FRAMINGS:
            raise ValueError(f"unknown framing {spec.framing!r}; known: {', '.join(FRAMINGS)}")
        self.framing = FRAMINGS[spec.framing]
        if not 0.0 <= spec.input_blur <= 5.0:
            raise ValueError(f"input_blur must be a sigma in [0, 5] pixels, got {spec.input_blur}")
        self.register_buffer("blur_kernel", gaussian_kernel(spec.input_blur, spec.channels),
                             persistent=False)
        # Channels-last convolutions: 25-40% faster on CPU (training and inference alike).
        self.to(memory_format=torch.channels_last)

    def masked(self, images: torch.Tensor) -> torch.Tensor:
        """The images as the backbone sees them: levels normalised, framed, black outside
        the mask."""
        x = self.levels(images, self.input_mask) * self.input_mask
        if self.spec.framing != "none":  # (the mask again: a framed image may spill past it)
            x = self.framing(x) * self.input_mask
        if self.spec.input_blur > 0:
            pad = self.blur_kernel.shape[-1] // 2
            x = F.conv2d(F.pad(x, (pad, pad, pad, pad)), self.blur_kernel, groups=x.shape[1])
        return x

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's features of float images in [0, 1] (what the head reads)."""
        return self._backbone_of_masked(self.masked(images))

    def _backbone_of_masked(self, masked: torch.Tensor) -> torch.Tensor:
        x = ((masked - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    def quarter_turn_raw(self, images: torch.Tensor) -> torch.Tensor:
        """The head's raw output on the four quarter-turn views (``quarter_turn_views``).
        Where the mask is the same under a quarter turn, so are the levels (a percentile
        does not care where a pixel is): the views are turned after the levels, which are
        then found once per image instead of four times."""
        from upright.confidence import quarter_turn_views

        if torch.equal(self.input_mask, torch.rot90(self.input_mask, 1, dims=(-2, -1))):
            return self.head(self._backbone_of_masked(quarter_turn_views(self.masked(images))))
        return self(quarter_turn_views(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))

    @torch.no_grad()
    def predict_belief(self, images: torch.Tensor, temperature: float = 1.0,
                       tta: bool = False) -> AngleBelief:
        """Angles with their calibrated confidence and runner-up (upright.confidence); an
        image with no content (flat after the levels rule) gets confidence 0: there is no
        up to find."""
        from upright.confidence import has_distribution, one_view_as_four

        if not has_distribution(self.head):
            return belief_of_views(self.head, self.input_mask, images, None, temperature,
                                   self.predict_angles(images, tta=tta))
        square = images.shape[-1] == images.shape[-2]
        raw_views = (self.quarter_turn_raw(images) if square
                     else one_view_as_four(self(images), self.head.centres.numel()))
        # The angle comes from the four views' mean distribution: what ``tta`` asks for.
        return belief_of_views(self.head, self.input_mask, images, raw_views, temperature)

    def blank(self, images: torch.Tensor) -> torch.Tensor:
        return blank_images(images, self.input_mask)

    @torch.no_grad()
    def predict_angles(self, images: torch.Tensor, tta: bool = False) -> torch.Tensor:
        """Angles in degrees, [-180, 180), for float images in [0, 1].

        ``tta``: also predict on the exact quarter turns of each (square) image: a head with
        a distribution takes the peak of the four distributions turned back and averaged
        (what its beliefs report); others subtract each turn and average the four estimates
        as unit vectors.
        """
        if not tta:
            return self.head.decode(self(images))
        if images.shape[-1] != images.shape[-2]:
            raise ValueError("test-time augmentation needs square inputs")
        from upright.confidence import four_view_angle, has_distribution

        if has_distribution(self.head):
            return four_view_angle(self.head, self.quarter_turn_raw(images))
        turned = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(4)])
        angles = self.head.decode(self(turned)).view(4, -1)
        turns = 90.0 * torch.arange(4, dtype=angles.dtype, device=angles.device)[:, None]
        return circular_mean(angles - turns, axis=0)


def blank_images(images: torch.Tensor, input_mask: torch.Tensor) -> torch.Tensor:
    """Images whose grey levels inside the mask span less than 2 of 255 steps: nothing
    to read (the levels rule would stretch that flat image's noise into contrast)."""
    values = images.mean(dim=1).flatten(1)[:, input_mask.flatten() > 0]
    return (values.amax(dim=1) - values.amin(dim=1)) < 2.0 / 255


def belief_of_views(head: AngleHead, input_mask: torch.Tensor, images: torch.Tensor,
                    raw_views: torch.Tensor | None, temperature: float,
                    angle: torch.Tensor | None = None) -> AngleBelief:
    """The belief (upright.confidence) from the head's raw outputs on the four quarter-turn
    views of ``images`` (the first N rows are the images themselves), whichever runtime
    computed them; ``angle`` defaults to the four views' (``four_view_angle``). Blank
    images get confidence 0."""
    from upright.confidence import belief, four_view_angle

    if angle is None:
        angle = four_view_angle(head, raw_views)
    result = belief(head, raw_views, angle, temperature)
    if not np.isnan(result.confidence).all():
        result.confidence[blank_images(images, input_mask).numpy()] = 0.0
    return result


class PairMaxPool(nn.Module):
    """2x2, stride-2 max pooling as the larger of four strided views: the same numbers as
    nn.MaxPool2d(2) (floor mode), without the indices its CPU kernel computes even when
    no gradient is wanted - 2.6x faster on a channels-last batch. For inference only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
        return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                             torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


def _fused_conv_relu_available() -> bool:
    """Whether this torch has oneDNN's convolution with a fused pointwise op (CPU builds
    since 2.0; inductor calls it): tried once on a tiny input."""
    try:
        x = torch.ones(1, 1, 3, 3)
        out = torch.ops.mkldnn._convolution_pointwise(x, torch.ones(1, 1, 1, 1), None, [0, 0], [1, 1],
                                                      [1, 1], 1, "relu", [None], "")
        return bool(torch.equal(out, x))
    except (AttributeError, RuntimeError, TypeError):
        return False


class ConvReLU(nn.Module):
    """A convolution and the ReLU after it as one oneDNN call on CPU: the ReLU is applied as
    the convolution writes its output, one pass over the largest activations fewer (5% of
    the shipped MNIST model's prediction). Elsewhere (a GPU, another dtype, a torch without
    the op) or where a gradient is wanted, the two ops as they were (the fused op has none)."""

    _fused: bool | None = None  # found on first use

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if ConvReLU._fused is None:
            ConvReLU._fused = _fused_conv_relu_available()
        conv = self.conv
        if (ConvReLU._fused and not torch.is_grad_enabled() and x.device.type == "cpu"
                and x.dtype == conv.weight.dtype == torch.float32):
            return torch.ops.mkldnn._convolution_pointwise(
                x, conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation),
                conv.groups, "relu", [None], "")
        return F.relu(conv(x), inplace=True)


def _fusable_conv(layer: nn.Module) -> bool:
    return (isinstance(layer, nn.Conv2d) and layer.padding_mode == "zeros"
            and not isinstance(layer.padding, str))


# Layers that act on each feature alone, so the flatten's order does not matter to them.
_PER_FEATURE = (nn.Dropout, nn.Identity, nn.ReLU)


class ChannelsLastFlatten(nn.Module):
    """Flatten in (H, W, C) order: a view of a channels-last activation where nn.Flatten's
    (C, H, W) order copies it; the dense layer after it takes its weights in that order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).reshape(len(x), -1)


def _flatten_channels_last(backbone: nn.Module, channels: int, height: int, width: int) -> None:
    """Each nn.Flatten of a 4-d activation whose next layer with weights is a Linear becomes
    ``ChannelsLastFlatten``, with that Linear's input columns reordered to match (the same
    numbers, up to float rounding)."""
    shapes: dict[int, tuple[int, ...]] = {}

    def note_shape(module: nn.Module, inputs: tuple, _output: torch.Tensor) -> None:
        shapes[id(module)] = tuple(inputs[0].shape)

    _probe(backbone, channels, height, width, [m for m in backbone.modules() if isinstance(m, nn.Flatten)],
           note_shape)
    # Depth first, so in the order a Sequential backbone runs its layers.
    leaves = [(backbone.get_submodule(path.rpartition(".")[0]), path.rpartition(".")[2], m)
              for path, m in backbone.named_modules() if path and not list(m.children())]
    for i, (parent, name, layer) in enumerate(leaves):
        shape = shapes.get(id(layer))
        if shape is None or len(shape) != 4 or layer.start_dim != 1 or layer.end_dim != -1:
            continue
        # Only layers that act on each feature alone may stand between (their order is free).
        between = list(itertools.takewhile(lambda leaf: isinstance(leaf[2], _PER_FEATURE), leaves[i + 1:]))
        following = leaves[i + 1 + len(between)][2] if i + 1 + len(between) < len(leaves) else None
        if not isinstance(following, nn.Linear):
            continue
        c, h, w = shape[1:]
        weight = following.weight.data
        following.weight.data = (weight.view(-1, c, h, w).permute(0, 2, 3, 1)
                                 .reshape(weight.shape[0], -1).contiguous())
        setattr(parent, name, ChannelsLastFlatten())


# The largest activation of one inference chunk (bytes): a batch whose activations stay in
# the processor's cache runs 1.3-2x faster on CPU than one that spills (measured on a 32 MiB
# L3: the published network peaks at 256 images, ours at 512 digits or 64 faces).
CHUNK_ACTIVATION_BYTES = 16 * 2**20


class CacheSizedChunks(nn.Module):
    """Runs a backbone on a CPU batch in chunks of ``images`` rows (the same numbers as one
    pass: no layer mixes images in evaluation mode); a GPU batch goes through whole."""

    def __init__(self, backbone: nn.Module, images: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.images = images
        self.out_features = backbone.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or len(x) <= self.images:
            return self.backbone(x)
        return torch.cat([self.backbone(part) for part in x.split(self.images)])


def largest_activation_bytes(backbone: nn.Module, channels: int, height: int, width: int) -> int:
    """Bytes of the largest output any layer of ``backbone`` gives for one image."""
    sizes: list[int] = []
    _probe(backbone, channels, height, width, [m for m in backbone.modules() if not list(m.children())],
           lambda _m, _i, out: sizes.append(out.numel() * out.element_size()))
    return max(sizes, default=1)


def _probe(backbone: nn.Module, channels: int, height: int, width: int, modules: list[nn.Module],
           hook) -> None:
    """Runs ``backbone`` once on a black channels-last image with ``hook`` on each of
    ``modules`` (a forward hook: it sees each one's inputs and output)."""
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.no_grad():
            backbone(torch.zeros(1, channels, height, width).contiguous(memory_format=torch.channels_last))
    finally:
        for handle in handles:
            handle.remove()


def _is_plain_pair_pool(layer: nn.Module) -> bool:
    def pair(v) -> bool:
        return v in (2, (2, 2))

    return (isinstance(layer, nn.MaxPool2d) and pair(layer.kernel_size) and pair(layer.stride)
            and layer.padding in (0, (0, 0)) and layer.dilation in (1, (1, 1))
            and not layer.ceil_mode and not layer.return_indices)


def for_inference(model: AngleModel) -> AngleModel:
    """An evaluation-mode copy with every BatchNorm folded into the convolution or linear
    layer before it (a quarter of the prediction's time went to BatchNorm), each
    convolution's ReLU fused into it, 2x2 max pooling computed without indices, the flatten
    before a dense layer a view of the channels-last activation, and CPU batches run in
    cache-sized chunks. The original, which may go on training, is left as it is."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    fused = copy.deepcopy(model).eval()
    for sequence in [m for m in fused.modules() if isinstance(m, nn.Sequential)]:
        for i, layer in enumerate(sequence):
            if _is_plain_pair_pool(layer):
                sequence[i] = PairMaxPool()
        for i in range(len(sequence) - 1):
            layer, norm = sequence[i], sequence[i + 1]
            if isinstance(layer, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                sequence[i] = fuse_conv_bn_eval(layer, norm)
            elif isinstance(layer, nn.Linear) and isinstance(norm, nn.BatchNorm1d):
                sequence[i] = fuse_linear_bn_eval(layer, norm)
            else:
                continue
            sequence[i + 1] = nn.Identity()
        # A convolution and its ReLU (past the folded BatchNorm's Identity) in one call.
        for i, layer in enumerate(sequence):
            rest = [j for j in range(i + 1, len(sequence)) if not isinstance(sequence[j], nn.Identity)]
            if _fusable_conv(layer) and rest and isinstance(sequence[rest[0]], nn.ReLU):
                sequence[i], sequence[rest[0]] = ConvReLU(layer), nn.Identity()
    spec = fused.spec
    _flatten_channels_last(fused.backbone, spec.channels, spec.height, spec.width)
    per_image = largest_activation_bytes(fused.backbone, spec.channels, spec.height, spec.width)
    fused.backbone = CacheSizedChunks(fused.backbone, max(1, CHUNK_ACTIVATION_BYTES // per_image))
    return fused.to(memory_format=torch.channels_last)

