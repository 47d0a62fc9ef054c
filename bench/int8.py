"""Benchmark: would an int8 inference path pay? The shipped MNIST model exported to ONNX, then
quantised by ONNX Runtime statically (QDQ, per-channel weights, calibrated on validation
digits) and dynamically; each against ONNX fp32 and torch on the test protocol's digits:
images/s and how far its angles move from fp32's. One JSON line.

    python bench/int8.py                 # needs onnxruntime (the `onnx` or `test` extra)

The issue's rule: an int8 path is kept only if its angles stay within 0.1 degree of fp32's.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_name  # bench/machine.py: the script's folder is on the path

from upright import checkpoint
from upright.angles import circular_difference
from upright.data.rotated import protocol_set, to_float_images
from upright.experiments import prepare_data, saved_model_protocol, validation_set
from upright.geometry import rotate_batch
from upright.models.model import for_inference
from upright.predictors import export_onnx

BATCH = 1024


def turned(items, fill: float) -> np.ndarray:
    """A rotated set's items as the model takes them: float (N, C, H, W), turned."""
    images = to_float_images(torch.from_numpy(items.images[items.source]))
    return rotate_batch(images, torch.from_numpy(np.asarray(items.angles, np.float32)), fill).numpy()


def main() -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    work = Path(tempfile.mkdtemp())
    folder = work / "mnist"
    fp32 = export_onnx("mnist", folder)
    model, info = checkpoint.load(folder)
    config = saved_model_protocol(info)
    _, splits = prepare_data(config)
    # Model inputs as every prediction path makes them (turned as the protocol turns them).
    test = protocol_set(splits.test.images, splits.test.indices, 2, config.eval_seed)
    truth = test.angles.astype(np.float64)
    x = turned(test, config.fill)
    calibration = turned(validation_set(config, splits), config.fill)[:2048]

    class Digits(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"images": calibration[i:i + 256]} for i in range(0, len(calibration), 256)])

        def get_next(self):
            return next(self.batches, None)

    prepared = work / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared))
    static, dynamic = work / "static.onnx", work / "dynamic.onnx"
    quantize_static(str(prepared), str(static), Digits(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv", "MatMul", "Gemm"])
    quantize_dynamic(str(prepared), str(dynamic), weight_type=QuantType.QInt8)

    def timed(predict) -> tuple[np.ndarray, float]:
        predict(x[:BATCH])
        started = time.perf_counter()
        angles = np.concatenate([predict(x[i:i + BATCH]) for i in range(0, len(x), BATCH)])
        return angles.astype(np.float64).reshape(-1), round(len(x) / (time.perf_counter() - started), 1)

    def session(path: Path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3
        s = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda batch: s.run(None, {"images": batch})[0]

    served = for_inference(model)
    with torch.inference_mode():
        torch_angles, torch_rate = timed(lambda b: served.predict_angles(torch.from_numpy(b)).numpy())
    base, base_rate = timed(session(fp32))
    result = {"benchmark": "int8", "cpu": cpu_name(), "threads": torch.get_num_threads(), "items": len(x),
              "torch_fp32": {"images_per_s": torch_rate,
                             "circular_mae": float(np.abs(circular_difference(torch_angles, truth)).mean())},
              "onnx_fp32": {"images_per_s": base_rate,
                            "max_from_torch": float(np.abs(circular_difference(base, torch_angles)).max()),
                            "circular_mae": float(np.abs(circular_difference(base, truth)).mean())}}
    for name, path in (("onnx_int8_static", static), ("onnx_int8_dynamic", dynamic)):
        angles, rate = timed(session(path))
        moved = np.abs(circular_difference(angles, base))
        result[name] = {"images_per_s": rate, "max_from_fp32": float(moved.max()),
                        "mean_from_fp32": float(moved.mean()), "share_over_0.1": float((moved > 0.1).mean()),
                        "circular_mae": float(np.abs(circular_difference(angles, truth)).mean()),
                        "kept": bool(moved.max() <= 0.1)}
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
