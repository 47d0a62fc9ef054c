"""A run's full configuration, the one source of every training setting. Saved as config.json.

Each field is declared with ``settings.setting``: default, help, section, range. The same
declarations validate a config (``validate``), read ``--set key=value`` text (``coerce``),
refuse unknown keys with a did-you-mean (``apply_overrides``) and generate the ``train``
flags (``upright.cli``). Model fields live in ``ModelSpec`` and are addressed as
``model.<name>``.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import Field, asdict, dataclass, fields
from typing import Any

from upright.errors import UserError
from upright.geometry import CUBIC_A_RANGE, RESAMPLERS
from upright.models.model import ModelSpec
from upright.settings import parse_duration, setting


class ConfigError(UserError, ValueError):
    """A setting that does not exist or a value it cannot take; the message names the key."""


@dataclass
class TrainConfig:
    # data protocol
    dataset: str = setting("mnist", section="data",
                           help="mnist, olivetti or folder:PATH (every image under PATH)")
    excluded_groups: list[int] | None = setting(
        None, section="data", flag="exclude", low=0,
        help="classes left out (MNIST default: 0 1 6 8); give none to keep all")
    val_fraction: float = setting(0.2, section="data", above=0.0, high=0.9,
                                  help="share of the training images held out for validation")
    limit: int | None = setting(None, section="data", low=1,
                                help="keep only the first N train+val and N test source images")
    angles_per_epoch: int = setting(20, section="data", low=1,
                                    help="views (random turns) of each training image per epoch")
    val_angles: int = setting(20, section="data", low=1, help="seeded angles per validation image")
    test_angles: int = setting(20, section="data", low=1,
                               help="seeded integer angles per test image (the published protocol)")
    train_eval_images: int = setting(2000, section="data", low=1,
                                     help="training images (at --test-angles each) for the train metrics")
    grid_images: int = setting(100, section="data", low=1, high=10_000,
                               help="test images in the report's before/after grid")
    suite_angles: int = setting(2, section="data", low=1,
                                help="protocol angles per test image in the robustness suite")
    integer_angles: bool = setting(True, section="data",
                                   help="training angles are integers, as in the article")
    fill: float = setting(0.0, section="data", low=0.0, high=1.0,
                          help="rotation fill in [0, 1] pixel units (0: black, the protocol's)")
    image_size: int = setting(64, section="data", low=8, high=1024,
                              help="folder datasets: model input size")
    aspect: str = setting("crop", section="data", choices=["crop", "pad"],
                          help="folder datasets: centre-crop or pad with black to a square")
    colour: str = setting("grey", section="data", choices=["grey", "rgb"],
                          help="folder datasets: colour mode")
    test_fraction: float = setting(0.2, section="data", above=0.0, high=0.9,
                                   help="folder datasets: share of the files (seeded) in the test split")
    cache: str = setting("auto", section="data", choices=["auto", "on", "off"],
                         help="folder datasets: keep the prepared training images in memory (on) or "
                              "read them from disk every epoch (off); auto: on when they fit in a "
                              "quarter of the free memory")
    eval_seed: int = setting(2024, section="data", low=0, high=2**32 - 1,
                             help="seed of the validation and test angles (the same for every run)")
    # training augmentation
    train_resamplers: list[str] = setting(
        factory=lambda: ["bilinear"], section="augment", choices=RESAMPLERS,
        help="interpolations for training rotations, each batch split between them")
    train_sharpness: float = setting(0.0, section="augment", low=0.0, high=4.0,
                                     help="random blur/sharpen of training images up to this strength")
    train_cubic_a: list[float] = setting(
        factory=lambda: list(CUBIC_A_RANGE), section="augment", low=-2.0, high=0.0, length=2,
        metavar=("LOW", "HIGH"),
        help="range of Keys' parameter for the cubic resampler (Pillow's bicubic rotate is -1)")
    train_rotation_steps: int = setting(1, section="augment", choices=[1, 2],
                                        help="2: turn in two steps, the last by a random angle, so no "
                                             "resampler fingerprint tells the label")
    train_quantise: bool = setting(False, section="augment",
                                   help="round training images to 8-bit levels, half by truncation")
    train_shift: float = setting(0.0, section="augment", low=0.0, high=64.0, metavar="PIXELS",
                                 help="pose: move training images up to this many pixels per axis")
    train_scale: list[float] = setting(factory=lambda: [1.0, 1.0], section="augment", above=0.0,
                                       high=4.0, length=2, metavar=("LOW", "HIGH"),
                                       help="pose: scale training images by a factor in this range")
    train_blur: float = setting(0.0, section="augment", low=0.0, high=5.0, metavar="SIGMA",
                                help="Gaussian blur of half the training images, sigma up to this (px)")
    train_gamma: float = setting(0.0, section="augment", low=0.0, high=2.0,
                                 help="random tone curve x ** g of training images, |log g| up to this")
    train_noise: float = setting(0.0, section="augment", low=0.0, high=128.0, metavar="GREY_LEVELS",
                                 help="Gaussian noise on training images, sigma drawn up to this")
    train_no_up: float = setting(0.0, section="augment", low=0.0, high=0.5, metavar="SHARE",
                                 help="share of each training batch replaced by images with no up "
                                      "(noise, flat grey, centred discs), taught a flat distribution "
                                      "(heads with a distribution only)")
    train_jpeg: float = setting(0.0, section="augment", low=0.0, high=1.0, metavar="SHARE",
                                help="share of training images given JPEG artefacts")
    train_jpeg_quality: list[float] = setting(
        factory=lambda: [30.0, 95.0], section="augment", low=1.0, high=100.0, length=2,
        metavar=("LOW", "HIGH"), help="JPEG quality range for --train-jpeg")
    # model
    model: ModelSpec = setting(factory=ModelSpec, section="model", cli=False,
                               help="the network: model.<field> (see the model flags)")
    # optimisation
    batch_size: int = setting(1024, section="optim", low=1, help="training images per step")
    lr: float = setting(1e-3, section="optim", above=0.0, high=10.0, help="Adam's learning rate")
    adam_eps: float = setting(1e-7, section="optim", above=0.0, high=1.0,
                              help="Adam's epsilon (1e-7: Keras' default, the article's)")
    weight_decay: float = setting(0.0, section="optim", low=0.0, high=1.0, help="Adam's weight decay")
    lr_schedule: str = setting("constant", section="optim", choices=["constant", "cosine"],
                               help="cosine: linear warm-up, then cosine decay to 0 by the budget")
    warmup_fraction: float = setting(0.03, section="optim", low=0.0, high=0.5,
                                     help="share of all steps spent warming up (cosine schedule)")
    max_epochs: int = setting(100, section="optim", low=1, help="at most this many epochs")
    max_steps: int | None = setting(None, section="optim", low=1,
                                    help="at most this many training steps (batches): a budget "
                                         "that, unlike a time limit, holds on a busy machine")
    patience: int = setting(5, section="optim", low=1,
                            help="early stopping: epochs without a better validation loss")
    max_time: float | None = setting(None, section="optim", above=0.0, metavar="DURATION",
                                     text=parse_duration,
                                     help="training time limit: 90s, 10m, 1h (best weights kept)")
    # (numpy and Lightning take seeds below 2^32)
    seed: int = setting(0, section="optim", low=0, high=2**32 - 1,
                        help="seed of the split, the weights and the turns")
    # runtime
    eval_batch_size: int = setting(256, section="runtime", low=1,
                                   help="images per validation and test batch (memory, not results)")
    precision: str = setting("auto", section="runtime",
                             choices=["auto", "32-true", "bf16-mixed", "16-mixed"],
                             help="Lightning's training precision; auto: bf16-mixed where the "
                                  "processor has bf16 units (AMX, AVX512-BF16, a bf16 GPU), else 32-true")
    num_threads: int | None = setting(None, section="runtime", low=1, high=1024,
                                      help="torch CPU threads (none: torch's own choice)")
    accelerator: str = setting("auto", section="runtime", choices=["auto", "cpu", "gpu"],
                               help="Lightning's accelerator")
    devices: int = setting(1, section="runtime", low=1,
                           help="processes (CPU) or GPUs per machine; more than one: DDP")
    num_nodes: int = setting(1, section="runtime", low=1,
                             help="machines (torchrun --nnodes, SLURM nodes); more than one: DDP")
    # ddp only: spawned processes (ddp_spawn) would keep the best weights and the gathered
    # evaluation in children that end with the fit.
    strategy: str = setting("auto", section="runtime", choices=["auto", "ddp"],
                            help="Lightning's strategy (auto: ddp for several processes)")
    num_workers: int = setting(2, section="runtime", low=0, high=64,
                               help="DataLoader processes reading a streamed folder's files")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A saved config.json back; keys this version does not know are dropped (a run
        folder written by an older upright still loads)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("model"), dict):
            values["model"] = ModelSpec.from_dict(values["model"])
        return cls(**values)


def setting_fields() -> dict[str, Field]:
    """Every setting by key: ``name`` for the run, ``model.name`` for the network."""
    keys = {f.name: f for f in fields(TrainConfig) if f.name != "model"}
    keys.update({f"model.{f.name}": f for f in fields(ModelSpec)})
    return keys


def _unknown(key: str) -> ConfigError:
    keys = setting_fields()
    guess = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if not guess and f"model.{key}" in keys:
        guess = [f"model.{key}"]
    hint = f"; did you mean {guess[0]!r}?" if guess else " (upright train --help lists them)"
    return ConfigError(f"unknown setting {key!r}{hint}")


def value_kind(f: Field) -> tuple[str, bool, bool]:
    """(item type name, is a list, may be None) from the field's annotation."""
    text = str(f.type).replace(" ", "")
    optional = text.endswith("|None")
    text = text.removesuffix("|None")
    if text.startswith("list["):
        return text[5:-1], True, optional
    return text, False, optional


def check_item(key: str, f: Field, item_type: str, value: Any) -> Any:
    meta = f.metadata
    if item_type == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if item_type in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                item_type == "int" and not float(value).is_integer()):
            raise ConfigError(f"{key}: expected {'an integer' if item_type == 'int' else 'a number'}, "
                              f"got {value!r}")
        value = int(value) if item_type == "int" else float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{key}: {value} is not a finite number")
        low, high, above = meta["low"], meta["high"], meta["above"]
        if (low is not None and value < low) or (high is not None and value > high) or (
                above is not None and value <= above):
            bounds = [f">= {low}" if low is not None else "", f"> {above}" if above is not None else "",
                      f"<= {high}" if high is not None else ""]
            raise ConfigError(f"{key}: {value} is out of range ({' and '.join(b for b in bounds if b)})")
    elif item_type == "str" and not isinstance(value, str):
        raise ConfigError(f"{key}: expected text, got {value!r}")
    if meta["choices"] and value not in meta["choices"]:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, meta['choices']))}")
    return value


def check_value(key: str, value: Any) -> Any:
    """``value`` for setting ``key``, checked against its declaration (numbers normalised)."""
    keys = setting_fields()
    if key not in keys:
        raise _unknown(key)
    f = keys[key]
    item_type, is_list, optional = value_kind(f)
    if value is None:
        if not optional:
            raise ConfigError(f"{key}: cannot be empty")
        return None
    if item_type.startswith("dict"):
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{key}: expected KEY=VALUE options (a JSON object), got {value!r}")
        return value
    if is_list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        length = f.metadata["length"]
        if length is not None and len(value) != length:
            raise ConfigError(f"{key}: expected {length} values, got {len(value)}")
        if length == 2 and all(isinstance(v, (int, float)) for v in value) and value[0] > value[1]:
            raise ConfigError(f"{key}: LOW {value[0]} is above HIGH {value[1]}")
        return [check_item(key, f, item_type, v) for v in value]
    return check_item(key, f, item_type, value)


def coerce(key: str, text: str) -> Any:
    """``--set key=value`` text -> a checked value: the setting's own reader where it has
    one (durations), else JSON where it parses (numbers, lists, true/false, null), else the
    text itself."""
    f = setting_fields().get(key)
    if f is not None and text.strip().lower() in ("null", "none") and value_kind(f)[2]:
        return CLEARED  # an optional setting cleared (no time limit, ...)
    if f is not None and f.metadata["text"] is not None:
        try:
            return check_value(key, f.metadata["text"](text))
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if f is not None and value_kind(f)[0] == "str" and isinstance(value, (int, float, bool)):
        value = text  # a name that happens to parse as a number stays a name
    return check_value(key, value)


def validate(config: TrainConfig) -> TrainConfig:
    """Check every setting against its declaration, before any work; returns ``config``."""
    for key in setting_fields():
        owner = config.model if key.startswith("model.") else config
        name = key.removeprefix("model.")
        setattr(owner, name, check_value(key, getattr(owner, name)))
    from upright.data.registry import SOURCES  # here: the loaders are not needed to describe

    name, _, argument = config.dataset.partition(":")
    if name not in SOURCES or (name == "folder") != bool(argument):
        raise ConfigError(f"dataset: {config.dataset!r} is not mnist, olivetti or folder:PATH")
    if len(config.model.std) != len(config.model.mean):
        raise ConfigError("model.std: needs one value per model.mean value "
                          f"({len(config.model.mean)}), got {len(config.model.std)}")
    from upright.models.heads import HEADS

    if config.train_no_up and not hasattr(HEADS[config.model.head], "flat_loss"):
        raise ConfigError(f"train_no_up: the {config.model.head} head has no distribution to make "
                          "flat; use a head with one (bins) or train_no_up 0")
    processes = config.devices * config.num_nodes
    if config.batch_size % processes:  # each process takes an equal part of every batch
        raise ConfigError(f"batch_size: {config.batch_size} is not a multiple of the {processes} "
                          "processes (devices x num_nodes) that share each batch")
    return config


class _Cleared:
    """An override that sets an optional setting to None (None itself means "not given")."""

    def __repr__(self) -> str:
        return "CLEARED"


CLEARED = _Cleared()


def apply_overrides(values: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Write ``overrides`` (``key`` or ``model.key``, or a nested ``model`` dict) into a
    recipe's values; None means "not given", CLEARED sets None. Unknown keys are a
    ConfigError."""
    keys = setting_fields()
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if key == "model" and isinstance(value, dict):
            flat.update({f"model.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    model_overrides: dict[str, Any] = {}
    for key, value in flat.items():
        if key not in keys:
            raise _unknown(key)
        if value is None:
            continue
        if value is CLEARED:
            value = None
        if keys[key].metadata["derived"]:
            raise ConfigError(f"{key}: set from the data, not by hand")
        if key.startswith("model."):
            model_overrides[key.removeprefix("model.")] = value
        else:
            values[key] = value
    if model_overrides:
        _merge_model(values.setdefault("model", {}), model_overrides)


def _merge_model(recipe_model: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Model overrides: options add to the recipe's own for the same backbone or head; a
    different backbone or head starts from no options (the recipe's may not fit it)."""
    for part in ("backbone", "head"):
        options = f"{part}_options"
        changed = overrides.get(part, recipe_model.get(part)) != recipe_model.get(part)
        base = {} if changed else recipe_model.get(options, {})
        recipe_model[options] = {**base, **overrides.get(options, {})}
    recipe_model.update({k: v for k, v in overrides.items() if not k.endswith("_options")})
