"""Benchmark: training images/s of the published network and ours, fp32 and bf16, in the
same run (so ratios hold on a noisy machine); inference images/s; peak RSS. One JSON line.

    python bench/speed.py --seconds 20
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch

from upright.data.rotated import to_float_images
from upright.geometry import rotate_batch
from upright.models.model import AngleModel, ModelSpec

MODELS = {
    "published (seed_mnist + softsign180)": ModelSpec(backbone="seed_mnist", head="softsign180"),
    "ours (compact + bins)": ModelSpec(backbone="compact", head="bins"),
}


def _images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g),
            torch.randint(-180, 180, (n,), generator=g).float())


def train_speed(spec: ModelSpec, batch: int, seconds: float, bf16: bool) -> float:
    torch.manual_seed(0)
    model = AngleModel(spec).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    images, angles = _images(batch)

    def step() -> None:
        x = rotate_batch(to_float_images(images), angles)  # the on-the-fly rotation counts
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            raw = model(x)
        loss = model.head.loss(raw.float(), angles)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        done += batch
    return done / (time.perf_counter() - started)


@torch.inference_mode()
def inference_speed(spec: ModelSpec, seconds: float) -> float:
    model = AngleModel(spec).eval()
    images, angles = _images(2048)
    x = rotate_batch(to_float_images(images), angles)
    model.predict_angles(x)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.predict_angles(x)
        done += len(x)
    return done / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement")
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    result: dict = {"benchmark": "speed", "threads": torch.get_num_threads(),
                    "batch_size": args.batch_size, "train_images_per_s": {},
                    "inference_images_per_s": {}}
    for name, spec in MODELS.items():
        result["train_images_per_s"][name] = {
            "fp32": round(train_speed(spec, args.batch_size, args.seconds, False), 1),
            "bf16": round(train_speed(spec, args.batch_size, args.seconds, True), 1),
        }
        result["inference_images_per_s"][name] = round(inference_speed(spec, args.seconds / 2), 1)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
