"""Benchmark: is one temperature enough? ECE of a model's confidence on its test protocol and
on every robustness variant, with the temperature fitted three ways. Prints one JSON line.

    python bench/calibration.py --model RUN      # a run folder (its config names the data)

"validation": the temperature upright fits after training (the validation items as the
protocol turns them; upright's own ``fit_temperature``). "validation + suite variants":
fitted on those items and on the same items as each robustness-suite variant makes them;
"validation + training augmentation": on the validation items and the same items put
through the run's own training augmentation (what a user could do without the suite); the
held-out variants are seen by none. Answers whether calibrating on realistic
variants would buy a lower worst-case ECE and at what cost on the protocol
(docs/confidence.md).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from upright import checkpoint, robustness
from upright.angles import circular_difference
from upright.confidence import calibration_report, confidence_at, fit_temperature
from upright.data.rotated import RotatedSet, to_float_images, to_uint8_images
from upright.evaluation import raw_views_set
from upright.experiments import load_run_config, prepare_data, validation_set
from upright.models.model import for_inference
from upright.training import augmentation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a run folder")
    args = parser.parse_args()
    config = load_run_config(args.model)
    model, _ = checkpoint.load(args.model)
    model = for_inference(model)
    _, splits = prepare_data(config)

    def views(items, prerotated: bool):
        """(4, N, bins) raw views, decoded angles, and which are within 5 degrees."""
        raw, angle = raw_views_set(model, items, config.eval_batch_size, config.fill, prerotated)
        return raw, angle, np.abs(circular_difference(angle.numpy().astype(np.float64), items.angles)) <= 5.0

    def pooled(chosen):  # the items of several sets as one (views stay view-major)
        raw = torch.cat([v[0] for v in chosen], dim=1)
        return (raw.reshape(-1, raw.shape[-1]), torch.cat([v[1] for v in chosen]),
                np.concatenate([v[2] for v in chosen]))

    def confidence(view, temperature: float) -> np.ndarray:
        raw, angle, _ = pooled([view])
        return confidence_at(model.head, raw, angle, np.array([temperature]))[0]

    val = validation_set(config, splits)
    fitting = [views(val, False)] + [views(robustness.variant_set(val, name, config.eval_seed + 1), True)
                                     for name in robustness.SUITE]
    augmented = [fitting[0], views(_augmented(val, config), True)]
    items = robustness.suite_items(splits.test.images, splits.test.indices, config.suite_angles,
                                   config.eval_seed)
    tests = {"protocol": views(items, False)}
    tests.update({name: views(robustness.variant_set(items, name, config.eval_seed), True)
                  for name in robustness.VARIANTS})
    result = {"benchmark": "calibration", "model": str(args.model)}
    with torch.inference_mode():
        for label, chosen in (("validation", fitting[:1]), ("validation + suite variants", fitting),
                              ("validation + training augmentation", augmented)):
            t = fit_temperature(model.head, *pooled(chosen))
            reports = {k: calibration_report(confidence(v, t), v[2]) for k, v in tests.items()}
            ece = {k: round(r["ece"], 4) for k, r in reports.items()}
            result[label] = {"temperature": t, "ece": ece,
                             "worst_suite": max(ece[n] for n in robustness.SUITE),
                             "worst_held_out": max(ece[n] for n in robustness.HELD_OUT),
                             # how sure against how often right: over- or under-confidence
                             "mean_confidence": {k: round(r["mean_confidence"], 3)
                                                 for k, r in reports.items()},
                             "within_5": {k: round(r["within_5"], 3) for k, r in reports.items()}}
    print(json.dumps(result))


def _augmented(val: RotatedSet, config, batch: int = 1024) -> RotatedSet:
    """The validation items turned and changed by the run's training augmentation (seeded),
    as 8-bit images turned in advance; in batches, so large images stay within memory."""
    augment = augmentation(config)
    torch.manual_seed(config.eval_seed)
    parts = []
    with torch.no_grad():
        for images, angles in val.batches(batch):
            parts.append(to_uint8_images(augment(to_float_images(images), angles, config.fill)))
    turned = np.concatenate(parts)
    return RotatedSet(turned, np.arange(len(turned)), val.angles)


if __name__ == "__main__":
    main()
