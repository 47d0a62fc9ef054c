"""Benchmark: training images/s of the published network and ours, fp32 and bf16, in the
same run (so ratios hold on a noisy machine); inference images/s; peak RSS. One JSON line.

    python bench/speed.py --seconds 20
    python bench/speed.py --seconds 5 --device cuda   # where a GPU is present
    python bench/speed.py --shipped --floor           # + the shipped model, the compute floor
    python bench/speed.py --device cuda --compile --floor   # + torch.compile rows, GPU utilisation

``--shipped``: the shipped MNIST model on its test protocol (MNIST from the mirror): angles
alone and with confidence (four views), images/s, on torch and (where onnxruntime is
installed) on ONNX Runtime, the same batches rotated the same way. ``--floor``: the shipped recipe's whole
training step (Lightning, on-the-fly rotation, every augmentation, optimiser, logging) over
the bare forward + backward + optimiser step of the same network on ready tensors; the
overhead ratio is whole-step time over bare-step time (``interleaved_overhead_ratio``: the
recipe's own step, without Lightning's loop, and the bare one timed in turn); on a GPU also the share of the
whole run's time the GPU was busy (NVML's utilisation, sampled every 0.1 s). ``--compile``:
the published network's training step again with ``torch.compile`` (compilation left out
of the timing).
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

try:
    from upright.models.model import for_inference
except ImportError:  # a version from before the inference copy (timing an older tree)
    def for_inference(model: AngleModel) -> AngleModel:
        return model.eval()

MODELS = {
    "published (seed_mnist + softsign180)": ModelSpec(backbone="seed_mnist", head="softsign180"),
    "ours (compact + bins)": ModelSpec(backbone="compact", head="bins"),
}


def _images(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g).to(device),
            torch.randint(-180, 180, (n,), generator=g).float().to(device))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # GPU work is asynchronous: time finished steps only


def train_speed(spec: ModelSpec, batch: int, seconds: float, bf16: bool,
                device: torch.device, compile: bool = False) -> float:
    torch.manual_seed(0)
    model = AngleModel(spec).to(device).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    images, angles = _images(batch, device)
    network = torch.compile(model) if compile else model  # compiled in the warm-up steps

    def step() -> None:
        x = rotate_batch(to_float_images(images), angles)  # the on-the-fly rotation counts
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            raw = network(x)
        loss = model.head.loss(raw.float(), angles)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up: allocator, kernel selection
        step()
    _sync(device)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        done += batch
        if done % (batch * 10) == 0:
            _sync(device)
    _sync(device)
    return done / (time.perf_counter() - started)


@torch.inference_mode()
def inference_speed(spec: ModelSpec, seconds: float, device: torch.device) -> float:
    model = for_inference(AngleModel(spec)).to(device)  # as every prediction path runs it
    images, angles = _images(2048, device)
    x = rotate_batch(to_float_images(images), angles)
    model.predict_angles(x)
    _sync(device)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.predict_angles(x)
        done += len(x)
        if done % (len(x) * 10) == 0:
            _sync(device)
    _sync(device)
    return done / (time.perf_counter() - started)


def shipped_inference(seconds: float, items: int = 8192) -> dict:
    """The shipped MNIST model on the first ``items`` of its test protocol, as evaluation
    runs it: angles alone, and angles with confidence."""
    from upright import checkpoint
    from upright.data.rotated import RotatedSet
    from upright.evaluation import belief_set, predict_set
    from upright.experiments import prepare_data, protocol_test_set, saved_model_protocol
    from upright.predictors import temperature_of
    from upright.shipped import shipped_model

    model, info = checkpoint.load(shipped_model("mnist"))
    model = for_inference(model)  # evaluation's own inference copy
    config = saved_model_protocol(info)
    protocol = protocol_test_set(config, prepare_data(config)[1])
    test = RotatedSet(protocol.images, protocol.source[:items], protocol.angles[:items])
    temperature = temperature_of(info)
    runs = {"angles": lambda: predict_set(model, test, config.eval_batch_size),
            "with_confidence": lambda: belief_set(model, test, config.eval_batch_size,
                                                  temperature=temperature)}
    onnx = _onnx_predictor(shipped_model("mnist"))
    if onnx is not None:  # the same batches, rotated the same way, on ONNX Runtime
        def on_onnx(method: str):
            return lambda: [getattr(onnx, method)(rotate_batch(to_float_images(images), angles,
                                                               config.fill).numpy())
                            for images, angles in test.batches(config.eval_batch_size)]

        runs.update(angles_onnx=on_onnx("predict"), with_confidence_onnx=on_onnx("predict_belief"))
    rates = {}
    for name, run in runs.items():
        run()  # warm-up
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds or not done:
            run()
            done += len(test)
        rates[name] = round(done / (time.perf_counter() - started), 1)
    return rates


def _onnx_predictor(folder):
    """The model exported to ONNX in a scratch folder, on ONNX Runtime (None without it, or
    for a version of upright from before the export gave a confidence)."""
    import shutil
    import tempfile
    from pathlib import Path

    try:
        import onnxruntime  # noqa: F401

        from upright.predictors import OnnxPredictor, export_onnx
    except ImportError:
        return None
    scratch = Path(tempfile.mkdtemp()) / "model"
    try:
        export_onnx(folder, scratch)  # a copy of the model with its model.onnx
    except TypeError:  # a version whose export writes beside the checkpoint only
        return None
    predictor = OnnxPredictor(scratch)
    shutil.rmtree(scratch.parent)
    return predictor


class GpuBusy:
    """NVML's GPU utilisation sampled in a thread while the block runs: the mean share of
    the time a kernel was running (None without NVML)."""

    def __init__(self, device: torch.device, every: float = 0.1) -> None:
        import threading

        self.device, self.every, self.samples = device, every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.samples.append(torch.cuda.utilization(self.device))
            except Exception:  # no NVML (pynvml) here: no figure rather than no benchmark
                return

    def __enter__(self) -> GpuBusy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean_percent(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def compute_floor(seconds: float, device: torch.device | None = None) -> dict:
    """The shipped recipe's whole training step against its bare compute, in one run. The
    bare step is timed for half the time before the whole run and half after, so a machine
    whose speed drifts (a shared VM) moves both figures alike. Both in fp32 on ``device``."""
    device = device or torch.device("cpu")
    import contextlib
    import tempfile
    from pathlib import Path

    from upright.experiments import fit_input_format, prepare_data
    from upright.recipes import make_config
    from upright.training import augmentation, fit, make_trainer

    config = make_config("mnist-robust", {"max_time": seconds + 10, "val_angles": 1,
                                          "accelerator": "gpu" if device.type == "cuda" else "cpu",
                                          "precision": "32-true"})
    source, splits = prepare_data(config)
    fit_input_format(config, source)
    del source
    # The bare step: the same network and batch size on one batch augmented beforehand.
    batch = config.batch_size
    images = torch.from_numpy(splits.train.images[:batch])
    angles = torch.randint(-180, 180, (batch,)).float()
    ready = augmentation(config)(to_float_images(images), angles, config.fill).to(device)
    angles = angles.to(device)
    bare_model = AngleModel(config.model).to(device).train()
    try:  # the optimiser training uses (fused where it can be)
        from upright.training import make_optimizer
        optimiser = make_optimizer(bare_model.parameters(), config)
    except ImportError:  # a version from before it (timing an older tree)
        optimiser = torch.optim.Adam(bare_model.parameters(), config.lr, eps=config.adam_eps)

    def step() -> None:
        loss = bare_model.head.loss(bare_model(ready), angles)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    def bare_rate(duration: float) -> float:
        for _ in range(5):
            step()
        _sync(device)
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < duration:
            step()
            done += batch
        _sync(device)
        return done / (time.perf_counter() - started)

    before = bare_rate(seconds / 2)
    torch.manual_seed(0)
    model = AngleModel(config.model)
    busy = GpuBusy(device) if device.type == "cuda" else contextlib.nullcontext()
    with tempfile.TemporaryDirectory() as run_dir, busy:
        trainer = make_trainer(config, Path(run_dir), progress=False)
        whole = fit(model, splits, config, Path(run_dir), progress=False, trainer=trainer)
    after = bare_rate(seconds / 2)
    bare = (before + after) / 2
    interleaved = interleaved_steps(config, splits, step, seconds, device)
    result = {"recipe": "mnist-robust", "batch_size": batch,
              "whole_step_images_per_s": whole["steady_images_per_second"],
              "bare_step_images_per_s": round(bare, 1),
              "bare_before_and_after": [round(before, 1), round(after, 1)],
              "overhead_ratio": round(bare / whole["steady_images_per_second"], 2),
              **interleaved}
    if isinstance(busy, GpuBusy):
        result["gpu_busy_percent_whole_run"] = busy.mean_percent
    return result


def interleaved_steps(config, splits, bare_step, seconds: float, device: torch.device) -> dict:
    """The recipe's own training step (``AngleModule._step`` on the epoch plan's batches:
    rotation, no-up images, augmentation, forward, loss, the logged sums; then backward and
    the optimiser) and the bare step, one after the other, for ``seconds``: the ratio of
    their median times. A drifting machine moves both alike, where the fit and the bare
    rate are timed a minute apart. Lightning's loop around the step is not in it (the fit
    against a plain loop over the same step: about 1-2%)."""
    import statistics

    try:
        from upright.data.rotated import EpochPlan, TrainBatches
        from upright.training import AngleModule, make_optimizer
    except ImportError:  # an older tree: no figure rather than no benchmark
        return {}
    torch.manual_seed(0)
    module = AngleModule(AngleModel(config.model).to(device), config).train()
    optimiser = make_optimizer(module.parameters(), config)
    train = splits.train
    plan = EpochPlan(getattr(train, "drawn", len(train)), config.batch_size, config.angles_per_epoch,
                     config.seed, config.integer_angles)
    gaps = getattr(train, "gaps", None)
    batches = TrainBatches(train.images, plan, gaps) if gaps is not None else TrainBatches(train.images, plan)

    def whole(k: int) -> None:
        images, angles, positions = batches[(0, k % len(batches))]
        loss = module._step((images.to(device), angles.to(device), positions), "train")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    def timed(run) -> float:
        _sync(device)
        started = time.perf_counter()
        run()
        _sync(device)
        return time.perf_counter() - started

    for k in range(5):
        whole(k)
        bare_step()
    whole_times, bare_times, k, started = [], [], 5, time.perf_counter()
    while time.perf_counter() - started < seconds:
        pair = [(whole_times, lambda k=k: whole(k)), (bare_times, bare_step)]
        for times, run in pair if k % 2 else pair[::-1]:  # each first in turn
            times.append(timed(run))
        k += 1
    whole_ms, bare_ms = statistics.median(whole_times) * 1e3, statistics.median(bare_times) * 1e3
    return {"interleaved_pairs": len(whole_times), "interleaved_whole_step_ms": round(whole_ms, 2),
            "interleaved_bare_step_ms": round(bare_ms, 2),
            "interleaved_overhead_ratio": round(whole_ms / bare_ms, 3)}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--shipped", action="store_true", help="the shipped MNIST model's inference")
    parser.add_argument("--floor", action="store_true", help="the shipped recipe's compute floor")
    parser.add_argument("--only", action="store_true", help="skip the published/ours rows")
    parser.add_argument("--compile", action="store_true",
                        help="the published network's training step with torch.compile too")
    args = parser.parse_args()
    device = torch.device(args.device)
    result: dict = {"benchmark": "speed", "device": _device_name(device),
                    "threads": torch.get_num_threads(),
                    "batch_size": args.batch_size, "train_images_per_s": {},
                    "inference_images_per_s": {}}
    if args.shipped:
        result["shipped_mnist_inference_images_per_s"] = shipped_inference(args.seconds)
    if args.floor:
        result["compute_floor"] = compute_floor(args.seconds, device)
    for name, spec in ({} if args.only else MODELS).items():
        result["train_images_per_s"][name] = {
            "fp32": round(train_speed(spec, args.batch_size, args.seconds, False, device), 1),
            "bf16": round(train_speed(spec, args.batch_size, args.seconds, True, device), 1),
        }
        result["inference_images_per_s"][name] = round(inference_speed(spec, args.seconds / 2, device), 1)
    if args.compile and not args.only:
        name, spec = next(iter(MODELS.items()))  # the published network
        for precision, bf16 in (("fp32_compiled", False), ("bf16_compiled", True)):
            try:
                rate = round(train_speed(spec, args.batch_size, args.seconds, bf16, device, compile=True), 1)
            except Exception as error:  # no working compiler here: say so, keep the other rows
                rate = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
            result["train_images_per_s"][name][precision] = rate
    if device.type == "cuda":
        result["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
