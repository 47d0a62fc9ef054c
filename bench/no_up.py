"""Benchmark: images with no up at all - what share a model keeps unsure (confidence below
``correct``'s default threshold) - beside what it turns of real, turned content.
Prints one JSON line.

    python bench/no_up.py --model mnist          # a shipped model or a run/model folder
    python bench/no_up.py --model faces --count 500

Kinds: blank and flat grey; uniform, Gaussian, low-contrast and colour noise; and three
that no training of ours draws (held out): salt-and-pepper dots, a real sample's pixels
shuffled (its ink, none of its shape), and stripes of random direction (a 180-degree
ambiguity at most, never an up). "content" is the shipped samples turned by seeded random
angles: the share turned and the share of those within 5 degrees.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import upright
from upright import checkpoint
from upright.angles import circular_difference
from upright.confidence import DEFAULT_MIN_CONFIDENCE
from upright.data.mnist import DEFAULT_EXCLUDED_DIGITS
from upright.data.samples import load_samples
from upright.geometry import PROTOCOL_CENTRE, rotate_image


def _stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    theta, period = rng.uniform(0, np.pi), rng.uniform(3, 12)
    ys, xs = np.mgrid[0:h, 0:w]
    wave = np.sin((xs * np.cos(theta) + ys * np.sin(theta)) * 2 * np.pi / period)
    return ((wave > 0) * rng.integers(120, 256)).astype(np.uint8)


def no_up_kinds(rng: np.random.Generator, samples: np.ndarray, count: int) -> dict[str, list[np.ndarray]]:
    h, w = samples.shape[1:3]

    def many(make):
        return [make() for _ in range(count)]

    def salt_pepper():
        image = np.zeros((h, w), np.uint8)
        image[rng.random((h, w)) < rng.uniform(0.02, 0.3)] = 255
        return image

    def shuffled():
        image = samples[rng.integers(len(samples))].copy().reshape(-1)
        rng.shuffle(image)
        return image.reshape(h, w)

    return {
        "blank": many(lambda: np.zeros((h, w), np.uint8)),
        "flat_grey": many(lambda: np.full((h, w), rng.integers(1, 256), np.uint8)),
        "uniform_noise": many(lambda: rng.integers(0, 256, (h, w), dtype=np.uint8)),
        "gaussian_noise": many(lambda: np.clip(rng.normal(128, 50, (h, w)), 0, 255).astype(np.uint8)),
        "low_contrast_noise": many(lambda: rng.integers(120, 136, (h, w), dtype=np.uint8)),
        "colour_noise": many(lambda: rng.integers(0, 256, (h, w, 3), dtype=np.uint8)),
        "held_out_salt_and_pepper": many(salt_pepper),
        "held_out_shuffled_pixels": many(shuffled),
        "held_out_stripes": many(lambda: _stripes(rng, h, w)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mnist")
    parser.add_argument("--samples", default=None, help="shipped samples: mnist or olivetti")
    parser.add_argument("--count", type=int, default=300, help="images per kind")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = upright.load(args.model)
    samples = load_samples(args.samples or ("olivetti" if model.spec.height == 64 else "mnist"))
    rng = np.random.default_rng(args.seed)
    kept = {}
    for kind, images in no_up_kinds(rng, samples.images, args.count).items():
        confidences = np.array([p.confidence for p in model.predict(images)], dtype=float)
        kept[kind] = round(float((confidences < DEFAULT_MIN_CONFIDENCE).mean()), 4)
    info = json.loads((checkpoint.model_folder(args.model) / "model.json").read_text())
    data = info.get("data", {})
    excluded = data.get("excluded_groups")
    if excluded is None:  # the source's default: MNIST leaves out 0, 1, 6, 8
        excluded = DEFAULT_EXCLUDED_DIGITS if data.get("dataset") == "mnist" else []
    content = samples.images[~np.isin(samples.groups, excluded)]  # what the model was trained on
    angles = rng.integers(-180, 180, len(content))
    turned = [rotate_image(img, float(a), centre=PROTOCOL_CENTRE)
              for img, a in zip(content, angles, strict=True)]
    predictions = model.predict(turned)
    confidence = np.array([p.confidence for p in predictions], dtype=float)
    accepted = confidence >= DEFAULT_MIN_CONFIDENCE
    errors = np.abs(circular_difference(np.array([p.angle for p in predictions]), angles))
    print(json.dumps({
        "model": args.model, "min_confidence": DEFAULT_MIN_CONFIDENCE, "images_per_kind": args.count,
        "kept_unsure": kept,
        "kept_unsure_all_kinds": round(float(np.mean(list(kept.values()))), 4),
        "content": {"images": len(angles), "turned": round(float(accepted.mean()), 4),
                    "within_5_of_turned": round(float((errors[accepted] <= 5).mean()), 4)},
    }))


if __name__ == "__main__":
    main()
