"""Benchmark: the published network in upright against the article's own recipe in Keras,
in one run, on the same rotated MNIST digits and the same thread count. One JSON line
with ``train_ratio`` and ``inference_ratio`` (upright's images/s over Keras').

    pip install -e ".[peer]"                     # TensorFlow: for this bench only
    python bench/peer.py --seconds 30            # ~4 minutes on 2 cores

Keras trains as the article does: rotations made beforehand (cv2, 20 angles per digit,
here the first ``--images`` of them), ``model.fit`` at batch 1024, Huber(3), Adam. Upright
trains as it does for a user: ``upright.training.fit`` on the mnist-published recipe,
rotating each batch on the fly, through Lightning. Both figures leave out the first epoch
or step (graph tracing, allocation). Inference: both predict the same pre-rotated test
digits at batch 1024 (upright with its BatchNorm folded, as every prediction path runs
it). Each side runs in its own process, one after the other, with
``--threads`` threads (default: every core), so neither competes with the other.
Without TensorFlow the bench says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu_name, run_json  # bench/machine.py: the script's folder is on the path

HERE = Path(__file__).resolve()


def rotated_digits(split: str, images: int, angles_per_image: int = 20, seed: int = 0):
    """The article's materialised set: each digit (0, 1, 6, 8 left out) at seeded integer
    angles, turned by cv2 about (w/2, h/2); uint8 (N, 28, 28) and angles in degrees."""
    from upright.data.mnist import DEFAULT_EXCLUDED_DIGITS, load_mnist
    from upright.geometry import PROTOCOL_CENTRE, rotate_image

    source = load_mnist()
    keep = ~np.isin(source.groups, DEFAULT_EXCLUDED_DIGITS) & (source.is_test == (split == "test"))
    digits = source.images[keep]
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(digits), images)
    angles = rng.integers(-180, 180, images)
    turned = np.stack([rotate_image(digits[i], float(a), centre=PROTOCOL_CENTRE)
                       for i, a in zip(pick, angles, strict=True)])
    return turned, angles.astype(np.float32)


def keras_side(args: argparse.Namespace) -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras = tf.keras
    x, y = rotated_digits("train", args.images)
    x = (x.astype(np.float32) / 255.0)[..., None]
    model = keras.Sequential([
        keras.layers.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.Dropout(0.3),
        keras.layers.Flatten(),
        keras.layers.Dense(500, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(10, activation="relu"),
        keras.layers.Dense(1),
        keras.layers.Activation(lambda t: keras.activations.softsign(t) * 180.0),
    ])
    model.compile(optimizer=keras.optimizers.Adam(), loss=keras.losses.Huber(delta=3.0))
    ends: list[float] = []
    stop_at = time.perf_counter() + args.seconds + 60  # first epoch excluded from the figure

    class Clock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            ends.append(time.perf_counter())
            if ends[-1] > stop_at or (len(ends) > 1 and ends[-1] - ends[0] > args.seconds):
                self.model.stop_training = True

    model.fit(x, y, batch_size=1024, epochs=1000, verbose=0, shuffle=True, callbacks=[Clock()])
    train = (len(ends) - 1) * len(x) / (ends[-1] - ends[0]) if len(ends) > 1 else None
    xt, _ = rotated_digits("test", args.test_images, seed=1)
    xt = (xt.astype(np.float32) / 255.0)[..., None]
    model.predict(xt[:2048], batch_size=1024, verbose=0)
    started = time.perf_counter()
    model.predict(xt, batch_size=1024, verbose=0)
    inference = len(xt) / (time.perf_counter() - started)
    return {"train_images_per_s": round(train, 1) if train else None,
            "inference_images_per_s": round(inference, 1), "tensorflow": tf.__version__,
            "epochs_timed": len(ends) - 1, "peak_rss_mb": _peak_rss_mb()}


def upright_side(args: argparse.Namespace) -> dict:
    import torch

    from upright.data.rotated import RotatedSet
    from upright.evaluation import predict_set
    from upright.experiments import fit_input_format, prepare_data
    from upright.models.model import AngleModel, for_inference
    from upright.recipes import make_config
    from upright.training import fit, make_trainer, resolve_precision

    torch.set_num_threads(args.threads)
    config = make_config("mnist-published", {"max_time": args.seconds + 5, "accelerator": "cpu",
                                             "val_angles": 1, "precision": args.precision})
    source, splits = prepare_data(config)
    fit_input_format(config, source)
    del source
    model = AngleModel(config.model)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = make_trainer(config, Path(run_dir), progress=False)
        training = fit(model, splits, config, Path(run_dir), progress=False, trainer=trainer)
    xt, angles = rotated_digits("test", args.test_images, seed=1)
    test = RotatedSet(xt, np.arange(len(xt)), angles)
    model = for_inference(model)  # what evaluation, correct and the server predict with
    predict_set(model, RotatedSet(xt[:2048], np.arange(2048), angles[:2048]), 1024, prerotated=True)
    started = time.perf_counter()
    predict_set(model, test, 1024, prerotated=True)
    inference = len(xt) / (time.perf_counter() - started)
    return {"train_images_per_s": training["steady_images_per_second"],
            "inference_images_per_s": round(inference, 1), "torch": torch.__version__,
            "precision": resolve_precision(config.precision, "cpu"), "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _side(name: str, args: argparse.Namespace) -> dict:
    command = [str(HERE), "--side", name, "--seconds", str(args.seconds),
               "--threads", str(args.threads), "--images", str(args.images),
               "--test-images", str(args.test_images), "--precision", args.precision]
    return run_json(command, f"bench/peer.py: the {name} side", OMP_NUM_THREADS=str(args.threads),
                    TF_CPP_MIN_LOG_LEVEL="2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30, help="training time per side")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--images", type=int, default=60_000, help="materialised training rotations (Keras)")
    parser.add_argument("--test-images", type=int, default=20_000)
    parser.add_argument("--precision", default="auto", help="upright's training precision")
    parser.add_argument("--side", choices=["keras", "upright"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps((keras_side if args.side == "keras" else upright_side)(args)))
        return
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        print(json.dumps({"benchmark": "peer", "skipped": "TensorFlow is not installed: "
                          "pip install -e '.[peer]'"}))
        return
    keras, ours = _side("keras", args), _side("upright", args)
    print(json.dumps({
        "benchmark": "peer", "cpu": cpu_name(), "threads": args.threads,
        "network": "the article's MNIST network (seed_mnist + softsign180), batch 1024",
        "keras": keras, "upright": ours,
        "train_ratio": round(ours["train_images_per_s"] / keras["train_images_per_s"], 2)
        if keras["train_images_per_s"] else None,
        "inference_ratio": round(ours["inference_images_per_s"] / keras["inference_images_per_s"], 2),
    }))


if __name__ == "__main__":
    main()
