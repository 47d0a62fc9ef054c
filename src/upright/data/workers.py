"""How DataLoader worker processes start.

Never by forking a process that already runs threads: a forked child inherits the locks
of threads that do not exist in it (OpenCV's and OpenMP's pools, gloo's, the pin-memory
thread), and a worker that touches one waits forever - under DDP the other rank then
waits with it. A fork server (spawn where there is none) starts each worker from a clean
process; Python 3.14 makes it the default on Linux. Each worker reads with one thread:
the workers are the parallelism, and threads per worker would only compete for cores.
"""

from __future__ import annotations

import multiprocessing
from typing import Any


def worker_options(workers: int) -> dict[str, Any]:
    """DataLoader keyword arguments for ``workers`` reading processes (none for 0)."""
    if workers <= 0:
        return {}
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return {"multiprocessing_context": method, "worker_init_fn": _one_thread_each}


def _one_thread_each(_worker_id: int) -> None:
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
