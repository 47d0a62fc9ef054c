"""Benchmark: correct 1,000 JPEG photos of 1024x768 (written by the benchmark).

Prints one JSON line: images/s end to end, peak RSS, and each stage's share of the work
(measured one stage at a time on a sample, single-threaded).

    python bench/correct.py --count 1000 [--model mnist|RUN] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from upright import checkpoint
from upright.correction import CorrectOptions, correct_paths, default_workers, model_input
from upright.geometry import rotate_image
from upright.imagefiles import encode_image, read_image
from upright.models.model import AngleModel, ModelSpec
from upright.predictors import load_predictor
from upright.shipped import shipped_model


def write_photos(folder: Path, count: int, size=(1024, 768)) -> None:
    """Photo-like JPEGs: smooth gradients, shapes and noise (so the encoder has real work)."""
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(count):
        base = (np.sin(xx / (40 + i % 17)) + np.cos(yy / (55 + i % 11))) * 50 + 120
        img = np.stack([base + rng.normal(0, 12, (h, w)) for _ in range(3)], axis=2)
        img[h // 3: h // 2, w // 4: w // 2] = rng.integers(0, 255, 3)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"photo{i:05d}.jpg",
                                                                     quality=90)


def model_folder(name: str | None, tmp: Path) -> str:
    if name:
        return name
    if shipped_model("mnist"):
        return "mnist"
    folder = tmp / "model"  # speed does not depend on the weights
    checkpoint.save(folder, AngleModel(ModelSpec(backbone="compact", head="bins")).eval())
    return str(folder)


def stage_times(files: list[Path], predictor, out: Path) -> dict[str, float]:
    totals = dict.fromkeys(("decode", "prepare", "predict", "rotate", "encode", "write"), 0.0)
    for path in files:
        t0 = time.perf_counter()
        decoded = read_image(path)
        t1 = time.perf_counter()
        x = model_input(decoded.pixels, predictor.spec)
        t2 = time.perf_counter()
        angle = float(predictor.predict(x[None])[0])
        t3 = time.perf_counter()
        rotated = rotate_image(decoded.pixels, -angle)
        t4 = time.perf_counter()
        data = encode_image(decoded, rotated)
        t5 = time.perf_counter()
        (out / path.name).write_bytes(data)
        t6 = time.perf_counter()
        for key, dt in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5), strict=True):
            totals[key] += dt
    whole = sum(totals.values())
    return {k: round(v / whole, 3) for k, v in totals.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--model", help="run/model folder or shipped name (default: mnist)")
    parser.add_argument("--workers", type=int, help="default: the tool's (CPU count + 1)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--stage-sample", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        photos = tmp / "photos"
        photos.mkdir()
        write_photos(photos, args.count)
        predictor = load_predictor(model_folder(args.model, tmp))
        options = CorrectOptions(workers=args.workers, batch_size=args.batch_size)
        started = time.perf_counter()
        results = correct_paths([photos], predictor, tmp / "out", options)
        seconds = time.perf_counter() - started
        rss_after_batch = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        failed = sum(r.action == "failed" for r in results)
        sample = sorted(photos.glob("*.jpg"))[: args.stage_sample]
        (tmp / "stage").mkdir()
        shares = stage_times(sample, predictor, tmp / "stage")
    print(json.dumps({
        "benchmark": "correct", "images": args.count, "size": [1024, 768], "failed": failed,
        "workers": options.workers or default_workers(), "seconds": round(seconds, 2),
        "images_per_s": round(args.count / seconds, 1), "peak_rss_mb": round(rss_after_batch, 1),
        "stage_share": shares,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
