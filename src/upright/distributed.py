"""Several training processes (Lightning's DDP): who this process is, and sharing results.

Lightning starts the processes (or finds those ``torchrun`` and SLURM started) and sets up
the process group; what is left to upright is splitting evaluation work between the ranks
and gathering the answers back in order, so every rank holds the same, complete results and
a multi-process evaluation equals a single-process one of the same weights.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T", np.ndarray, torch.Tensor)


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def shut_down() -> None:
    """Leave this process's process group, if it has one, before the interpreter exits: left
    to the interpreter's teardown, the group's threads can abort the process (SIGABRT,
    "terminate called without an active exception"; seen once on a rank of a finished
    two-node run, whose launcher then waited 300 s on it)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def shard_bounds(n: int, parts: int | None = None, index: int | None = None) -> tuple[int, int]:
    """This rank's contiguous share of ``n`` items: [start, stop). Contiguous, so gathering
    the shares in rank order gives the items back in their own order."""
    parts = world_size() if parts is None else parts
    index = rank() if index is None else index
    return n * index // parts, n * (index + 1) // parts


def _device() -> torch.device:
    # NCCL moves only GPU tensors; gloo only CPU ones.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather(part: T, axis: int = 0) -> T:
    """Every rank's ``part`` joined along ``axis`` in rank order, on every rank (the parts may
    differ in length along ``axis``; nothing is pickled)."""
    if not active():
        return part
    is_numpy = isinstance(part, np.ndarray)
    tensor = torch.from_numpy(np.ascontiguousarray(part)) if is_numpy else part.detach()
    tensor = tensor.movedim(axis, 0).contiguous()
    device = _device()
    length = torch.tensor([tensor.shape[0]], device=device)
    lengths = [torch.zeros_like(length) for _ in range(dist.get_world_size())]
    dist.all_gather(lengths, length)
    longest = int(max(int(n) for n in lengths))
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=device)
    padded[:tensor.shape[0]] = tensor.to(device)
    parts = [torch.zeros_like(padded) for _ in lengths]
    dist.all_gather(parts, padded)
    joined = torch.cat([p[:int(n)] for p, n in zip(parts, lengths, strict=True)]).movedim(0, axis)
    joined = joined.to(part.device if not is_numpy else "cpu")
    return joined.numpy() if is_numpy else joined


def total(value: float) -> float:
    """The sum of ``value`` over all ranks (the value itself in a single process)."""
    if not active():
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=_device())
    dist.all_reduce(tensor)
    return float(tensor.item())


def from_rank_zero(value: float) -> float:
    """Rank 0's ``value`` on every rank: for quantities each rank would measure a little
    differently (the clock), which must be the same everywhere (the learning rate)."""
    if not active():
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=_device())
    dist.broadcast(tensor, src=0)
    return float(tensor.item())
