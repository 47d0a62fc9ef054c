"""Benchmark: MNIST test digits changed in ways no recipe draws and neither the robustness
suite nor its held-out list names, then turned by Pillow (bicubic, about the exact centre)
and predicted through the Python API, as a user's file would be. Prints one JSON line.

    python bench/unseen.py --model mnist [--model RUN ...] [--count 1000]

Per change and model: circular MAE, share within 5 degrees, share off by more than 90
(flips), and at ``correct``'s default threshold the share turned, within 5 of those and
off by more than 30 of those (the harm a user sees). The changes: handwriting wobble
(elastic), a thinner or slanted pen, a tilted page (perspective), a bar across the digit,
motion blur, the digit at half size in a corner, the digit in a frame twice its size, ink
specks, dark ink on grey paper.
"""

from __future__ import annotations

import argparse
import json
import zlib

import cv2
import numpy as np
from PIL import Image

import upright
from upright.angles import circular_difference
from upright.confidence import DEFAULT_MIN_CONFIDENCE
from upright.data.mnist import DEFAULT_EXCLUDED_DIGITS, load_mnist


def _elastic(img, rng):
    field = [cv2.GaussianBlur(rng.uniform(-1, 1, img.shape).astype(np.float32), (0, 0), 3) * 20
             for _ in range(2)]
    ys, xs = np.mgrid[0:img.shape[0], 0:img.shape[1]].astype(np.float32)
    return cv2.remap(img, xs + field[0], ys + field[1], cv2.INTER_LINEAR)


def _slanted(img, rng):
    s = rng.uniform(-0.35, 0.35)
    return cv2.warpAffine(img, np.float32([[1, s, -s * img.shape[0] / 2], [0, 1, 0]]), img.shape[::-1])


def _perspective(img, rng):
    h, w = img.shape
    corners = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    moved = corners + rng.uniform(-3, 3, (4, 2)).astype(np.float32)
    return cv2.warpPerspective(img, cv2.getPerspectiveTransform(corners, moved), (w, h))


def _occluded(img, rng):
    out = img.copy()
    row = rng.integers(4, img.shape[0] - 6)
    out[row:row + 3] = 0
    return out


def _motion_blur(img, rng):
    kernel = np.zeros((5, 5), np.float32)
    kernel[2] = 1
    kernel = cv2.warpAffine(kernel, cv2.getRotationMatrix2D((2, 2), rng.uniform(0, 180), 1), (5, 5))
    return cv2.filter2D(img, -1, kernel / kernel.sum())


def _half_size_in_a_corner(img, rng):
    h, w = img.shape
    out = np.zeros_like(img)
    y, x = rng.integers(0, h // 2 + 1), rng.integers(0, w // 2 + 1)
    out[y:y + h // 2, x:x + w // 2] = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return out


def _wide_margin(img, rng):
    h, w = img.shape
    out = np.zeros((2 * h, 2 * w), img.dtype)
    out[h // 2:h // 2 + h, w // 2:w // 2 + w] = img
    return out


def _specks(img, rng):
    out = img.copy()
    flip = rng.random(img.shape) < 0.03
    out[flip] = 255 - out[flip]
    return out


def _dark_on_grey(img, rng):
    return (200 - 0.6 * img.astype(np.float32)).clip(0, 255).astype(np.uint8)


# name -> (change of the upright digit, fill of the turn)
CHANGES = {
    "as_is": (lambda img, rng: img, 0),
    "elastic": (_elastic, 0),
    "thin_pen": (lambda img, rng: cv2.erode(img, np.ones((2, 2), np.uint8)), 0),
    "slanted": (_slanted, 0),
    "perspective": (_perspective, 0),
    "occluded": (_occluded, 0),
    "motion_blur": (_motion_blur, 0),
    "half_size_in_a_corner": (_half_size_in_a_corner, 0),
    "wide_margin": (_wide_margin, 0),
    "specks": (_specks, 0),
    "dark_on_grey": (_dark_on_grey, 200),
}


def scores(model, images: list[np.ndarray], angles: np.ndarray) -> dict[str, float]:
    predictions = model.predict(images)
    errors = np.abs(circular_difference(np.array([p.angle for p in predictions]), angles))
    confidence = np.array([np.nan if p.confidence is None else p.confidence for p in predictions])
    turned = ~(confidence < DEFAULT_MIN_CONFIDENCE)  # no confidence: every image is turned

    def share(mask) -> float | None:
        return round(float(mask.mean()), 4) if mask.size else None

    return {"circular_mae": round(float(errors.mean()), 2), "within_5": share(errors <= 5),
            "flips": share(errors > 90), "turned": share(turned),
            "within_5_of_turned": share(errors[turned] <= 5),
            "off_30_of_turned": share(errors[turned] > 30)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", help="shipped name or run folder, repeatable "
                        "(default: mnist)")
    parser.add_argument("--count", type=int, default=1000, help="test digits per change")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names = args.model or ["mnist"]
    models = {name: upright.load(name) for name in names}
    source = load_mnist()
    pool = np.flatnonzero(source.is_test & ~np.isin(source.groups, DEFAULT_EXCLUDED_DIGITS))
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(pool, min(args.count, len(pool)), replace=False)
    angles = rng.integers(-180, 180, len(chosen)).astype(float)
    result: dict[str, dict] = {name: {} for name in names}
    for change, (make, fill) in CHANGES.items():
        # Seeded by the change alone: every model sees the same images.
        change_rng = np.random.default_rng([args.seed, zlib.crc32(change.encode())])
        images = [np.asarray(Image.fromarray(make(source.images[i], change_rng)).rotate(
                  float(a), resample=Image.BICUBIC, fillcolor=fill))
                  for i, a in zip(chosen, angles, strict=True)]
        for name, model in models.items():
            result[name][change] = scores(model, images, angles)
    summary = {name: {"mean_circular_mae": round(float(np.mean([r["circular_mae"] for r in rows.values()])),
                                                  2),
                      "worst": max(rows, key=lambda k: rows[k]["circular_mae"])}
               for name, rows in result.items()}
    print(json.dumps({"benchmark": "unseen", "digits": len(chosen), "min_confidence": DEFAULT_MIN_CONFIDENCE,
                      "summary": summary, "changes": result}))


if __name__ == "__main__":
    main()
