"""Training with Lightning: the module, the data module and the trainer factory."""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.loggers import CSVLogger

from upright import distributed
from upright.angles import circular_error
from upright.augment import Augmentation, no_up_images
from upright.config import TrainConfig
from upright.data.rotated import (
    EpochPlan,
    RotatedSet,
    SetBatches,
    TrainBatches,
    protocol_set,
    to_float_images,
)
from upright.data.source import Splits
from upright.geometry import rotate_batch
from upright.models.model import AngleModel


def augmentation(config: TrainConfig) -> Augmentation:
    """The training augmentation a config asks for (checked before any work)."""
    return Augmentation(resamplers=config.train_resamplers, cubic_a=config.train_cubic_a,
                        rotation_steps=config.train_rotation_steps, shift=config.train_shift,
                        scale=config.train_scale, sharpness=config.train_sharpness,
                        blur=config.train_blur,
                        gamma=config.train_gamma, noise=config.train_noise / 255.0,
                        quantise=config.train_quantise, jpeg=config.train_jpeg,
                        jpeg_quality=config.train_jpeg_quality)


class AngleModule(L.LightningModule):
    """Rotates each batch on the device, then fits the model's head loss."""

    def __init__(self, model: AngleModel, config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.augment = augmentation(config)
        self.samples_seen = 0
        self.elapsed = 0.0  # training seconds, rank 0's clock on every rank (the LR schedule's)
        self._val_sums = torch.zeros(3, dtype=torch.float64)  # loss, error, count
        self._train_sums: torch.Tensor | None = None  # the same, on the training device

    def _step(self, batch: tuple[torch.Tensor, ...], stage: str) -> torch.Tensor:
        images, angles = batch[0], batch[1]  # (a training batch also says its sample positions)
        no_up = round(self.config.train_no_up * len(images)) if stage == "train" else 0
        # Rotation and augmentation need no gradient: in inference mode their few hundred
        # small ops skip autograd's bookkeeping (~8% of the augmentation's time on CPU). The
        # clone turns the result into a tensor the network may save for its backward pass.
        with torch.inference_mode():
            x = to_float_images(images)
            if stage == "train":  # augmentations for training only; validation is the protocol
                if no_up:  # the batch is shuffled: its first images make way
                    x = x.clone()
                    x[:no_up] = no_up_images(no_up, *x.shape[1:], device=x.device)
                x = self.augment(x, angles, self.config.fill)
            else:
                x = rotate_batch(x, angles, self.config.fill)
        x = x.clone()
        features = self.model.features(x)
        raw = self.model.head(features)
        if stage == "train":
            self.samples_seen += len(angles)
        if no_up:
            share = no_up / len(x)
            loss = (1 - share) * self.model.head.loss(raw[no_up:], angles[no_up:]) \
                + share * self.model.head.flat_loss(raw[:no_up])
            raw, angles = raw[no_up:], angles[no_up:]
        else:
            loss = self.model.head.loss(raw, angles)
        mae = circular_error(self.model.head.decode(raw.detach()), angles).mean()
        n = len(angles)
        if stage == "val":  # summed here, shared over the ranks at the epoch's end
            self._val_sums += torch.tensor([float(loss) * n, float(mae) * n, n], dtype=torch.float64)
            return loss
        # Summed on the device (no sync per step) and logged once per epoch: two self.log
        # calls a step cost ~2 ms of Lightning's bookkeeping, 4% of a small batch's step.
        sums = torch.stack([loss.detach() * n, mae.detach() * n, torch.full_like(mae, n)]).float()
        self._train_sums = sums if self._train_sums is None else self._train_sums + sums
        return loss

    def _log_means(self, stage: str, sums: torch.Tensor) -> None:
        """The epoch's mean loss and error from per-rank sums: every item counts once,
        whichever rank scored it - the value a single process gets, on every rank."""
        loss, error, count = (distributed.total(float(v)) for v in sums)
        if count:
            self.log(f"{stage}_loss", loss / count, prog_bar=True, sync_dist=True)  # equal: a no-op
            self.log(f"{stage}_mae", error / count, prog_bar=True, sync_dist=True)

    def on_train_start(self) -> None:
        self._started = time.perf_counter()

    def on_train_batch_start(self, batch, batch_idx) -> None:
        # Each rank's clock differs a little; a learning rate that followed it would make the
        # ranks' weights drift apart, so all follow rank 0's.
        self.elapsed = distributed.from_rank_zero(time.perf_counter() - self._started)

    def on_validation_epoch_end(self) -> None:
        # The same on every rank: early stopping and the best weights agree.
        self._log_means("val", self._val_sums)
        self._val_sums.zero_()

    def on_train_epoch_end(self) -> None:
        if self._train_sums is not None:
            self._log_means("train", self._train_sums)
            self._train_sums = None

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def configure_optimizers(self):
        config = self.config
        optimizer = make_optimizer(self.parameters(), config)
        if config.lr_schedule == "constant":
            return optimizer
        if config.lr_schedule != "cosine":
            raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}: constant or cosine")
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if config.max_steps:
            total = min(total, config.max_steps)
        warmup = max(1, int(config.warmup_fraction * total))

        def factor(step: int) -> float:
            return cosine_factor(step, total, warmup, self.elapsed, config.max_time)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def make_optimizer(parameters, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam (AdamW where the recipe sets a weight decay), with the fused kernel where this
    torch has one for the parameters' device: one pass over the weights instead of a dozen
    small ops per tensor (an optimiser step 6x faster on CPU, 5% of a batch-64 step)."""
    params = list(parameters)
    kind = torch.optim.AdamW if config.weight_decay else torch.optim.Adam
    options = {"lr": config.lr, "eps": config.adam_eps}
    if config.weight_decay:
        options["weight_decay"] = config.weight_decay
    try:
        return kind(params, fused=True, **options)
    except (RuntimeError, ValueError):  # torch < 2.4 on CPU, or a device without the kernel
        return kind(params, **options)


def cosine_factor(step: int, total: int, warmup: int, elapsed: float = 0.0,
                  budget: float | None = None) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to 0.

    How far the run is: its share of the planned steps or, under a time budget, of the
    budget's time, whichever is further; a run stopped by ``--max-time`` still ends
    annealed instead of being cut at a high rate. Both shares are of the whole run, so the
    clock takes over only once the run falls behind the budget's pace: on a machine fast
    enough for the plan the rate follows the steps alone, and a seed gives the same run.
    """
    if step < warmup:
        return (step + 1) / warmup
    done = step / max(1, total)
    if budget:
        done = max(done, elapsed / budget)
    progress = (done * total - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


class RotationDataModule(L.LightningDataModule):
    """Training batches rotated on the fly; a fixed, seeded validation set. Under DDP each
    rank gets its part of every training batch and its share of the validation set."""

    def __init__(self, splits: Splits, config: TrainConfig) -> None:
        super().__init__()
        self.splits = splits
        self.config = config
        self.val_set: RotatedSet = protocol_set(splits.val.images, splits.val.indices,
                                                config.val_angles, config.eval_seed + 1)

    def train_dataloader(self):
        config, trainer = self.config, self.trainer
        train = self.splits.train
        # Planned over the images drawn, read or not (``Subset.gaps``): a folder trains on the
        # same samples at the same angles in memory and streamed.
        plan = EpochPlan(train.drawn, config.batch_size, config.angles_per_epoch,
                         config.seed, config.integer_angles, trainer.global_rank, trainer.world_size)
        # Workers read a streamed folder's files; arrays in memory need none.
        workers = 0 if isinstance(train.images, np.ndarray) else config.num_workers
        return TrainBatches(train.images, plan, train.gaps).loader(workers)

    def val_dataloader(self):
        val = self.val_set
        start, stop = distributed.shard_bounds(len(val), self.trainer.world_size, self.trainer.global_rank)
        share = RotatedSet(val.images, val.source[start:stop], val.angles[start:stop])
        return torch.utils.data.DataLoader(SetBatches(share, self.config.eval_batch_size), batch_size=None)


class KeepBestWeights(Callback):
    """Keeps a copy of the weights whenever validation loss improves. Every rank keeps its
    own (DDP keeps the ranks' weights equal, and validation loss is shared), so no rank
    waits for a file another wrote."""

    def __init__(self) -> None:
        self.best = float("inf")
        self.best_epoch: int | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        loss = trainer.callback_metrics.get("val_loss")
        if loss is not None and float(loss) < self.best:
            self.best = float(loss)
            self.best_epoch = trainer.current_epoch
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.model.state_dict().items()}


class StepBudget(Callback):
    """Ends training after ``steps`` optimiser steps as the time limit ends it: by asking
    Lightning to stop, so the interrupted epoch is still validated and its weights judged
    (Lightning's own ``max_steps`` ends the loop without a validation)."""

    def __init__(self, steps: int | None) -> None:
        self.steps = steps

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.steps and trainer.global_step >= self.steps:
            trainer.should_stop = True


class StepClock(Callback):
    """Training images/s between the end of the first step and the end of the last: the
    steady rate, without start-up, the first step's allocations and validation passes."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self.images = 0
        self.paused = 0.0
        self._pending = 0.0
        self._paused_at: float | None = None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        else:
            self.images += len(batch[1])
            self.paused += self._pending  # a validation pass between two steps
        self._pending = 0.0
        self.last = now

    def on_validation_start(self, trainer, module) -> None:
        self._paused_at = time.perf_counter()

    def on_validation_end(self, trainer, module) -> None:
        # Counted only once a later step shows it fell inside the timed stretch (the pass
        # after the last step, at the time limit, does not).
        if self._paused_at is not None:
            self._pending += time.perf_counter() - self._paused_at
        self._paused_at = None

    def images_per_second(self) -> float | None:
        """Summed over the ranks (rank 0's clock)."""
        images = distributed.total(self.images)
        if self.first is None or self.last is None or self.last <= self.first:
            return None
        seconds = distributed.from_rank_zero(self.last - self.first - self.paused)
        return round(images / seconds, 1) if seconds > 0 else None


def quiet_lightning() -> None:
    """Lightning's banner lines (GPU available: False, ...) are noise on a CPU tool."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*IterableDataset.*__len__.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")


BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags() -> set[str]:
    """The processor's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve_precision(precision: str, accelerator: str = "auto", flags: set[str] | None = None) -> str:
    """``auto`` -> bf16-mixed where bf16 has units to run on (a bf16 GPU, or a CPU with AMX
    or AVX512-BF16: 1.5x and more there), else 32-true (bf16 emulated on AVX2 is slower
    than fp32). Any other value is kept."""
    if precision != "auto":
        return precision
    if accelerator in ("auto", "gpu") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    flags = cpu_flags() if flags is None else flags
    return "bf16-mixed" if any(f in flags for f in BF16_CPU_FLAGS) else "32-true"


def make_trainer(config: TrainConfig, run_dir: Path, progress: bool = True) -> L.Trainer:
    """Lightning's trainer for a config. Made before anything is written: it knows this
    process's rank, whether Lightning starts the processes (``--devices N``) or ``torchrun``
    or SLURM did, so only rank 0 writes the run folder."""
    augmentation(config)  # a bad setting fails here, before any work
    quiet_lightning()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    several = config.devices * config.num_nodes > 1
    return L.Trainer(
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy="ddp" if config.strategy == "auto" and several else config.strategy,
        use_distributed_sampler=False,  # the epoch plan shards the batches itself
        max_epochs=config.max_epochs,
        max_time=timedelta(seconds=config.max_time) if config.max_time else None,
        precision=resolve_precision(config.precision, config.accelerator),
        callbacks=[EarlyStopping(monitor="val_loss", patience=config.patience, mode="min"),
                   KeepBestWeights(), StepClock(), StepBudget(config.max_steps)],
        logger=CSVLogger(save_dir=str(run_dir), name="", version=""),
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
        log_every_n_steps=50,
        deterministic=False,
    )


def fit(model: AngleModel, splits: Splits, config: TrainConfig, run_dir: Path,
        progress: bool = True, trainer: L.Trainer | None = None) -> dict:
    """Train with early stopping; the model ends with its best validation weights. Under
    DDP every rank returns the same figures (summed or shared over the ranks)."""
    trainer = trainer or make_trainer(config, run_dir, progress)
    L.seed_everything(config.seed, workers=True, verbose=False)
    best = next(cb for cb in trainer.callbacks if isinstance(cb, KeepBestWeights))
    clock = next(cb for cb in trainer.callbacks if isinstance(cb, StepClock))
    module = AngleModule(model, config)
    data = RotationDataModule(splits, config)
    started = time.perf_counter()
    try:
        trainer.fit(module, datamodule=data)
    except SystemExit as exc:
        # Lightning ends a Ctrl-C with exit(1) and a SIGTERM with exit(None) - success, to a
        # scheduler - and says nothing: both are an interruption (upright's 130 and message).
        raise KeyboardInterrupt from exc
    seconds = distributed.from_rank_zero(time.perf_counter() - started)
    if best.state is not None:  # else stopped (time limit) before the first validation
        model.load_state_dict(best.state)
    samples = int(distributed.total(module.samples_seen))
    return {
        "epochs": int(trainer.current_epoch),
        "best_epoch": None if best.best_epoch is None else int(best.best_epoch) + 1,
        "best_val_loss": None if best.best_epoch is None else best.best,
        "train_seconds": round(seconds, 2),
        "samples_seen": samples,
        "images_per_second": round(samples / seconds, 1) if seconds > 0 else None,
        "steady_images_per_second": clock.images_per_second(),  # steps only
        "stopped_by": _stop_reason(trainer, config),
        "world_size": int(trainer.world_size),
        "precision": str(trainer.precision),
        "peak_rss_mb": peak_rss_mb(),  # so far: training and its validation passes
    }


def peak_rss_mb() -> float | None:
    """The process's peak resident memory in MB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _stop_reason(trainer: L.Trainer, config: TrainConfig) -> str:
    for cb in trainer.callbacks:
        if isinstance(cb, EarlyStopping) and cb.stopped_epoch > 0:
            return "early_stopping"
    # (the step budget first: spent inside the last epoch, it leaves the epoch count full too)
    if config.max_steps and trainer.global_step >= config.max_steps:
        return "max_steps"
    if trainer.current_epoch >= config.max_epochs:
        return "max_epochs"
    return "max_time" if config.max_time else "finished"
