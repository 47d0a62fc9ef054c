"""Benchmark: training images/s with 1 and 2 DDP processes on this machine, and of a
streamed folder of generated 256x256 JPEGs (DataLoader workers 0, 1, 2) against the same
folder read into memory; peak RSS of the streamed run as the folder grows. One JSON line.

    python bench/scale.py --seconds 30                       # ~10 min on 2 cores
    python bench/scale.py --seconds 10 --files 2000 10000    # a quick look
    python bench/scale.py --accelerator gpu                  # where a GPU is lent

Each figure comes from a fresh process (`measure`), so peak RSS is that run's alone; the
training is the real one (Lightning, the epoch plan, the recipe's model), cut by a time
budget, without the evaluation that follows a real run. MNIST comes from the local mirror
(UPRIGHT_DATA_MIRROR) or the cache.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu_name, run_json  # bench/machine.py: the script's folder is on the path

HERE = Path(__file__).resolve()


def generate_jpegs(folder: Path, count: int, size: int = 256) -> Path:
    """``count`` upright synthetic scenes (a bright glyph with an up on textured ground),
    made once and reused."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    have = sum(1 for _ in folder.glob("*.jpg"))
    rng = np.random.default_rng(have)
    for i in range(have, count):
        image = rng.integers(0, 60, (size // 8, size // 8), dtype=np.uint8)
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
        x, y = int(rng.integers(60, 140)), int(rng.integers(40, 90))
        cv2.rectangle(image, (x, y), (x + 24, y + 130), 230, -1)          # a stem
        cv2.rectangle(image, (x, y), (x + 80, y + 22), 230, -1)           # a bar at its top
        cv2.circle(image, (x - 30, y + 120), 14, 200, -1)                  # a dot lower left
        cv2.imwrite(str(folder / f"scene{i:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


def subset_folder(source: Path, folder: Path, count: int) -> Path:
    """A folder of the first ``count`` files (links: no copies)."""
    folder.mkdir(parents=True, exist_ok=True)
    if sum(1 for _ in folder.iterdir()) != count:
        for link in folder.iterdir():
            link.unlink()
        for file in sorted(source.glob("*.jpg"))[:count]:
            (folder / file.name).symlink_to(file)
    return folder


def measure(args: argparse.Namespace) -> None:
    """One training run cut at ``--seconds``: its images/s and peak RSS (rank 0 prints)."""
    from upright import distributed
    from upright.experiments import fit_input_format, prepare_data
    from upright.models.model import AngleModel
    from upright.recipes import make_config
    from upright.training import fit, make_trainer

    overrides = {"dataset": args.dataset, "devices": args.devices, "accelerator": args.accelerator,
                 "max_time": args.seconds, "cache": args.cache, "num_workers": args.workers,
                 "angles_per_epoch": 1, "val_fraction": 0.02, "test_fraction": 0.02,
                 "val_angles": 1, "patience": 100, "image_size": 64}
    config = make_config(args.recipe, overrides)
    started = time.perf_counter()
    source, splits = prepare_data(config)
    fit_input_format(config, source)
    read_seconds = time.perf_counter() - started
    del source
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = make_trainer(config, Path(run_dir), progress=False)
        model = AngleModel(config.model)
        training = fit(model, splits, config, Path(run_dir), progress=False, trainer=trainer)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if distributed.rank() == 0:
        print(json.dumps({"images_per_second": training["steady_images_per_second"],
                          "images_per_second_with_start_up": training["images_per_second"],
                          "samples": training["samples_seen"], "world_size": training["world_size"],
                          "read_seconds": round(read_seconds, 1),
                          "peak_rss_mb": training["peak_rss_mb"],
                          "largest_worker_rss_mb": round(children, 1)}))


def run_measure(**options) -> dict:
    command = [str(HERE), "measure"]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    return run_json(command, f"bench/scale.py: {' '.join(command)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="job")
    one = sub.add_parser("measure", help="one training run (used by the bench itself)")
    one.add_argument("--dataset", default="mnist")
    one.add_argument("--recipe", default="mnist-published")
    one.add_argument("--devices", type=int, default=1)
    one.add_argument("--accelerator", default="cpu")
    one.add_argument("--cache", default="on")
    one.add_argument("--workers", type=int, default=0)
    one.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--seconds", type=float, default=30, help="training time per figure")
    parser.add_argument("--files", type=int, nargs=2, default=[10_000, 50_000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "upright-scale")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    args = parser.parse_args()
    if args.job == "measure":
        measure(args)
        return
    small, large = args.files
    jpegs = generate_jpegs(args.workdir / "jpegs", large)
    folders = {n: subset_folder(jpegs, args.workdir / f"folder-{n}", n) for n in (small, large)}
    common = {"seconds": args.seconds, "accelerator": args.accelerator}
    ddp = {p: run_measure(dataset="mnist", devices=p, **common) for p in (1, 2)}
    folder = f"folder:{folders[large]}"
    streamed = {w: run_measure(dataset=folder, cache="off", workers=w, recipe="mnist-fast", **common)
                for w in (0, 1, 2)}
    in_memory = run_measure(dataset=folder, cache="on", workers=2, recipe="mnist-fast", **common)
    small_run = run_measure(dataset=f"folder:{folders[small]}", cache="off", workers=2,
                            recipe="mnist-fast", **common)
    result = {
        "cpu": cpu_name(),
        "ddp_mnist_published": {f"{p}_process": ddp[p] for p in ddp},
        "ddp_speedup": round(ddp[2]["images_per_second"] / ddp[1]["images_per_second"], 2),
        "folder": f"{large} generated 256x256 JPEGs, prepared to 64x64 grey, mnist-fast",
        "streamed": {f"workers_{w}": streamed[w] for w in streamed},
        "in_memory": in_memory,
        "streamed_over_in_memory": round(streamed[2]["images_per_second"]
                                         / in_memory["images_per_second"], 2),
        "peak_rss_mb_streamed": {str(small): small_run["peak_rss_mb"],
                                 str(large): streamed[2]["peak_rss_mb"]},
        "peak_rss_mb_in_memory": in_memory["peak_rss_mb"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
