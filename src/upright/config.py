"""A run's full configuration: data protocol, model, optimisation. Saved as config.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from upright.geometry import CUBIC_A_RANGE
from upright.models.model import ModelSpec


@dataclass
class TrainConfig:
    # Data protocol
    dataset: str = "mnist"
    excluded_groups: list[int] | None = None  # None: the source's default (MNIST: 0 1 6 8)
    val_fraction: float = 0.2
    limit: int | None = None  # keep only the first N train+val and N test source images
    angles_per_epoch: int = 20  # an epoch shows each training image this many times
    val_angles: int = 20  # seeded integer angles per validation image
    test_angles: int = 20  # seeded integer angles per test image (the published protocol)
    train_eval_images: int = 2000  # training images (x test_angles) for the train metrics
    grid_images: int = 100  # test images in the before/after grid
    suite_angles: int = 2  # protocol angles per test image in the robustness suite
    integer_angles: bool = True  # training angles are integers, as in the article
    fill: float = 0.0  # rotation fill, in [0, 1] pixel units (black)
    # Resamplers for training rotations (each batch split evenly between them); evaluation
    # always uses bilinear, the published protocol.
    train_resamplers: list[str] = field(default_factory=lambda: ["bilinear"])
    train_sharpness: float = 0.0  # random blur/sharpen of training images, up to this strength
    # The range "cubic" draws Keys' parameter a from, per image
    train_cubic_a: list[float] = field(default_factory=lambda: list(CUBIC_A_RANGE))
    # 2: rotate training images in two steps, the last by a random angle, so no resampler
    # fingerprint tells the label (see geometry.rotate_two_steps)
    train_rotation_steps: int = 1
    # Quantise rotated training images to 8 bits, half by truncation (augment.quantise_8bit)
    train_quantise: bool = False
    # Pose: content shifted up to this many pixels per axis and scaled within train_scale
    # before the turn, so the model cannot read where the digit sits
    train_shift: float = 0.0
    train_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    train_blur: float = 0.0  # Gaussian blur of half the training images, sigma up to this (px)
    train_gamma: float = 0.0  # tone curve x ** g, |log g| up to this
    train_noise: float = 0.0  # Gaussian noise, per-image sigma up to this, in grey levels
    train_jpeg: float = 0.0  # share of training images put through JPEG artefacts
    train_jpeg_quality: list[float] = field(default_factory=lambda: [30.0, 95.0])
    # Folder sources only (``folder:PATH``): model input size, aspect policy, colour, test share
    image_size: int = 64
    aspect: str = "crop"  # "crop": centre-crop to a square; "pad": pad to a square with black
    colour: str = "grey"  # "grey" or "rgb"
    test_fraction: float = 0.2
    # Model
    model: ModelSpec = field(default_factory=ModelSpec)
    # Optimisation
    batch_size: int = 1024
    # Validation and test batches: 256 keeps CPU training's peak memory low (2048 added
    # about 450 MB of activations to a 28x28 run) at no cost in speed.
    eval_batch_size: int = 256
    lr: float = 1e-3
    adam_eps: float = 1e-7  # Keras' Adam default
    weight_decay: float = 0.0
    lr_schedule: str = "constant"  # or "cosine": linear warm-up, then cosine decay to 0
    warmup_fraction: float = 0.03  # of all training steps (cosine schedule)
    max_epochs: int = 100
    patience: int = 5
    max_time: float | None = None  # seconds of training, then stop (best weights kept)
    seed: int = 0
    eval_seed: int = 2024  # test and validation angles: the same for every run
    precision: str = "32-true"
    num_threads: int | None = None  # torch CPU threads; None: torch's default
    accelerator: str = "auto"  # Lightning's: cpu, gpu, auto
    devices: int = 1  # more than one: Lightning's DDP strategy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("model"), dict):
            values["model"] = ModelSpec.from_dict(values["model"])
        return cls(**values)
