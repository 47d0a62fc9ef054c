"""Benchmark: correct 1,000 JPEG photos of 1024x768 (written by the benchmark).

Prints one JSON line: images/s end to end for three runs over the same files, one after
the other: ``dry_run`` (predict only), ``full`` (the default options: with the shipped
MNIST model most of these photos are copied through as kept-unsure) and ``turn_all``
(``--min-confidence 0``: every image decoded whole, turned and encoded); each run's CPU
time per image and actions; peak RSS; the CPU; and each stage's CPU time per turned image
and share of the work (one stage at a time on a sample, single-threaded; ``--stage-sample
0`` skips it).

    python bench/correct.py --count 1000 [--model mnist|RUN] [--workers 2] [--camera]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu_name  # bench/machine.py: the script's folder is on the path
from PIL import Image

from upright import checkpoint
from upright.correction import CorrectOptions, correct_paths, default_workers, model_input
from upright.geometry import rotate_image
from upright.imagefiles import encode_image, read_image
from upright.models.model import AngleModel, ModelSpec
from upright.predictors import load_predictor
from upright.shipped import shipped_model


def camera_exif(thumbnail: np.ndarray) -> bytes:
    """An EXIF segment's payload as a camera writes it: a Make tag in IFD0 and a JPEG
    thumbnail in IFD1 (whose own markers sit inside the segment)."""
    import io
    import struct

    buffer = io.BytesIO()
    Image.fromarray(thumbnail).save(buffer, format="JPEG", quality=80)
    thumb = buffer.getvalue()
    ifd0 = struct.pack(">HHHI4sI", 1, 0x010F, 2, 4, b"Cam\0", 26)
    ifd1 = struct.pack(">HHHIIHHIII", 2, 0x0201, 4, 1, 56, 0x0202, 4, 1, len(thumb), 0)
    return b"Exif\0\0MM\x00\x2a" + struct.pack(">I", 8) + ifd0 + ifd1 + thumb


def write_photos(folder: Path, count: int, size=(1024, 768), camera: bool = False) -> None:
    """Photo-like JPEGs: smooth gradients, shapes and noise (so the encoder has real work);
    ``camera``: each with an EXIF thumbnail of 160x120, as a camera's photos have."""
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(count):
        base = (np.sin(xx / (40 + i % 17)) + np.cos(yy / (55 + i % 11))) * 50 + 120
        img = np.stack([base + rng.normal(0, 12, (h, w)) for _ in range(3)], axis=2)
        img[h // 3: h // 2, w // 4: w // 2] = rng.integers(0, 255, 3)
        photo = np.clip(img, 0, 255).astype(np.uint8)
        extra = {"exif": camera_exif(photo[::6, ::6][:120, :160])} if camera else {}
        Image.fromarray(photo).save(folder / f"photo{i:05d}.jpg", quality=90, **extra)


def model_folder(name: str | None, tmp: Path) -> str:
    if name:
        return name
    if shipped_model("mnist"):
        return "mnist"
    folder = tmp / "model"  # speed does not depend on the weights
    checkpoint.save(folder, AngleModel(ModelSpec(backbone="compact", head="bins")).eval())
    return str(folder)


def stage_ms(files: list[Path], predictor, out: Path) -> dict[str, float]:
    """What one turned image costs, stage by stage, as ``correct`` does it: the prediction
    view, its model input, the prediction, the whole image, the turn, the encoding, the write.
    One thread, as ``correct`` gives each task, timed in this thread's CPU time: a share
    that holds where other programs share the machine."""
    import cv2
    import torch

    from upright.correction import view_side  # here: --stage-sample 0 also runs older versions

    cv2.setNumThreads(1)
    torch.set_num_threads(1)

    names = ("decode_view", "prepare", "predict", "decode", "rotate", "encode", "write")
    totals = dict.fromkeys(names, 0.0)
    side = view_side(predictor.spec)
    inputs = []
    for path in files:
        t0 = time.thread_time()
        view = read_image(path, min_side=side)
        t1 = time.thread_time()
        inputs.append(model_input(view.pixels, predictor.spec, view.mode))
        totals["decode_view"] += t1 - t0
        totals["prepare"] += time.thread_time() - t1
    angles = []
    for i in range(0, len(inputs), 32):  # in batches with confidence, as correct predicts
        t0 = time.thread_time()
        angles.extend(predictor.predict_belief(np.stack(inputs[i:i + 32])).angle)
        totals["predict"] += time.thread_time() - t0
    for path, angle in zip(files, angles, strict=True):
        t0 = time.thread_time()
        decoded = read_image(path)
        t1 = time.thread_time()
        rotated = rotate_image(decoded.pixels, -float(angle))
        t2 = time.thread_time()
        data = encode_image(decoded, rotated)
        t3 = time.thread_time()
        (out / path.name).write_bytes(data)
        t4 = time.thread_time()
        for key, dt in zip(names[3:], (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            totals[key] += dt
    return {k: v / len(files) * 1000 for k, v in totals.items()}  # CPU ms per image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--model", help="run/model folder or shipped name (default: mnist)")
    parser.add_argument("--workers", type=int, help="default: the tool's (CPU count + 1)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--stage-sample", type=int, default=50)
    parser.add_argument("--camera", action="store_true",
                        help="photos with an EXIF thumbnail, as a camera writes them")
    args = parser.parse_args()
    runs = {"dry_run": {"dry_run": True}, "full": {}, "turn_all": {"min_confidence": 0.0}}
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        photos = tmp / "photos"
        photos.mkdir()
        write_photos(photos, args.count, camera=args.camera)
        predictor = load_predictor(model_folder(args.model, tmp))
        # Warm up (the first batch through torch is slow) on one file, untimed.
        correct_paths([next(photos.iterdir())], predictor, tmp / "warm", CorrectOptions(dry_run=True))
        for name, extra in runs.items():
            options = CorrectOptions(workers=args.workers, batch_size=args.batch_size, **extra)
            started, cpu_started = time.perf_counter(), time.process_time()
            results = correct_paths([photos], predictor, tmp / name, options)
            seconds = time.perf_counter() - started
            # CPU time per image (all threads): what a run costs even where others share the CPU.
            cpu_ms = (time.process_time() - cpu_started) / args.count * 1000
            report[name] = {"seconds": round(seconds, 2), "images_per_s": round(args.count / seconds, 1),
                            "cpu_ms_per_image": round(cpu_ms, 2),
                            "actions": dict(collections.Counter(r.action for r in results))}
        rss_after_batch = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        stages = {}
        if args.stage_sample > 0:
            sample = sorted(photos.glob("*.jpg"))[: args.stage_sample]
            (tmp / "stage").mkdir()
            stages = stage_ms(sample, predictor, tmp / "stage")
    print(json.dumps({
        "benchmark": "correct", "images": args.count, "size": [1024, 768], "camera": args.camera,
        "cpu": cpu_name(), "cores": os.cpu_count(), "workers": args.workers or default_workers(),
        **report, "peak_rss_mb": round(rss_after_batch, 1),
        "stage_cpu_ms": {k: round(v, 2) for k, v in stages.items()},
        "stage_share": {k: round(v / sum(stages.values()), 3) for k, v in stages.items()},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
