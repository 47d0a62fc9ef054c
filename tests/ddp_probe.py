"""Train the tiny run under DDP and leave each rank's evidence in a trace folder.

Run by tests/test_distributed.py, either plainly (Lightning starts the other processes,
which run this same script) or under ``torchrun``. Each rank writes ``rank<R>.json``: its
world size, the sample positions it trained on per epoch, a digest of its final weights
and the test metrics it computed. Only rank 0 may write the run folder.
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from support import TINY_RUN  # noqa: E402
from upright import training  # noqa: E402
from upright.experiments import train_run  # noqa: E402
from upright.recipes import make_config  # noqa: E402


def main() -> None:
    # A rank that hangs prints where every thread of it waits, then exits, before the
    # test's own limit: a hang on another machine's CI then says where it was.
    faulthandler.dump_traceback_later(480, exit=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("run")
    parser.add_argument("trace")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument("--cache", default="on")
    parser.add_argument("--max-time", type=float, default=None)
    args = parser.parse_args()

    seen: dict[int, list[int]] = {}
    step = training.AngleModule.training_step

    def recording_step(self, batch, batch_idx):
        seen.setdefault(int(self.trainer.current_epoch), []).extend(batch[2].tolist())
        return step(self, batch, batch_idx)

    training.AngleModule.training_step = recording_step
    digests = {}
    fit = training.fit

    def recording_fit(model, *a, **k):
        result = fit(model, *a, **k)
        flat = torch.cat([p.detach().flatten() for p in model.state_dict().values()])
        digests["weights"] = hashlib.sha256(flat.numpy().tobytes()).hexdigest()
        return result

    training.fit = recording_fit
    overrides = {**TINY_RUN, "dataset": f"folder:{args.folder}", "devices": args.devices,
                 "num_nodes": args.num_nodes, "accelerator": "cpu", "cache": args.cache,
                 "num_workers": 1, "max_epochs": 200 if args.max_time else 2,
                 "max_time": args.max_time, "patience": 200,
                 "model.head": "bins"}  # a distribution: calibration is gathered too
    metrics = train_run(make_config("mnist-published", overrides), args.run, progress=False,
                        report=False, overwrite=False)
    rank = dist.get_rank() if dist.is_initialized() else 0
    trace = {"rank": rank, "world_size": metrics["training"]["world_size"],
             "positions": {str(e): p for e, p in seen.items()}, "weights": digests["weights"],
             "test": metrics["test"], "samples_seen": metrics["training"]["samples_seen"],
             "stopped_by": metrics["training"]["stopped_by"]}
    Path(args.trace).mkdir(parents=True, exist_ok=True)
    (Path(args.trace) / f"rank{rank}.json").write_text(json.dumps(trace))
    from upright.distributed import shut_down

    shut_down()  # as the upright command does: no process group left to the teardown


if __name__ == "__main__":
    main()
