"""Runtimes that turn prepared model inputs into angles: torch (a checkpoint) or ONNX."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from upright import checkpoint, fileio
from upright.confidence import VIEWS, AngleBelief, has_distribution, one_view_as_four
from upright.errors import UserError
from upright.models.heads import HEADS
from upright.models.model import INPUT_MASKS, AngleModel, ModelSpec, belief_of_views, for_inference

ONNX_FILE = "model.onnx"
RUNTIMES = ("torch", "onnx")


class Predictor(Protocol):
    spec: ModelSpec

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Float32 (N, C, H, W) in [0, 1] -> angles in degrees, [-180, 180)."""

    def predict_belief(self, batch: np.ndarray) -> AngleBelief:
        """Angles with confidence and runner-up (NaN where the model has no distribution)."""


class AnglePredictor(torch.nn.Module):
    """The model with its head's decoding: images in; angles and the head's raw output
    out (what ONNX exports; the raw output carries the distribution a confidence needs)."""

    def __init__(self, model: AngleModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.model(images)
        return self.model.head.decode(raw), raw


class TorchPredictor:
    def __init__(self, model: AngleModel, tta: bool = False, temperature: float = 1.0) -> None:
        self.model = for_inference(model)
        self.spec = model.spec
        self.tta = tta
        self.temperature = temperature  # from model.json's calibration (1: not calibrated)

    @torch.inference_mode()
    def predict(self, batch: np.ndarray) -> np.ndarray:
        angles = self.model.predict_angles(torch.from_numpy(batch), tta=self.tta)
        return angles.numpy().astype(np.float64)

    @torch.inference_mode()
    def predict_belief(self, batch: np.ndarray) -> AngleBelief:
        return self.model.predict_belief(torch.from_numpy(batch), self.temperature, tta=self.tta)


class OnnxPredictor:
    def __init__(self, folder: Path) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise checkpoint.ModelLoadError(
                "the onnx runtime needs onnxruntime: pip install 'upright[onnx]'") from exc
        config = checkpoint.read_config(folder)
        try:
            self.spec = checkpoint.check_spec(config.get("model"))
        except (TypeError, ValueError) as exc:
            raise checkpoint.ModelLoadError(f"{folder / checkpoint.CONFIG_FILE}: {exc}") from exc
        path = folder / ONNX_FILE
        if not path.is_file():
            raise checkpoint.ModelLoadError(f"{path}: missing ({_export_hint(folder)})")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(str(path), options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise checkpoint.ModelLoadError(f"{path}: not a loadable ONNX model ({exc})") from exc
        self.input_name = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        # An export older than the raw output gives angles only: no confidence from it.
        self.raw_output = "raw" if "raw" in outputs else None
        self.temperature = temperature_of(config)
        # The head's decoding and the input mask need no weights: the head is built for one
        # input feature, only its bin centres and decoding are used.
        self.head = HEADS[self.spec.head](1, **self.spec.head_options)
        self.input_mask = INPUT_MASKS[self.spec.input_mask](self.spec.height, self.spec.width)

    def _run(self, batch: np.ndarray, output: str) -> np.ndarray:
        return self.session.run([output], {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self._run(batch, "angles").astype(np.float64).reshape(-1)

    def predict_belief(self, batch: np.ndarray) -> AngleBelief:
        if self.raw_output is None or not has_distribution(self.head):
            return AngleBelief.without_confidence(self.predict(batch))
        if batch.shape[-1] == batch.shape[-2]:
            views = np.concatenate([np.rot90(batch, k, axes=(2, 3)) for k in range(VIEWS)])
            raw_views = torch.from_numpy(self._run(views, self.raw_output))
        else:  # as the torch runtime: the one view stands for all four
            raw_views = one_view_as_four(torch.from_numpy(self._run(batch, self.raw_output)),
                                         self.head.centres.numel())
        return belief_of_views(self.head, self.input_mask, torch.from_numpy(batch), raw_views,
                               self.temperature)


def _export_hint(folder: Path) -> str:
    """How to get a model.onnx for ``folder``: beside its checkpoint, or for a shipped
    model (whose package is not written to) in a folder of its own."""
    from upright.shipped import SHIPPED_MODELS, shipped_model

    name = next((n for n in SHIPPED_MODELS if shipped_model(n) == folder), None)
    if name is not None:
        return (f"run `upright export {name} --format onnx -o DIR` first, then use "
                "--model DIR")
    return f"run `upright export {folder} --format onnx` first"


def load_predictor(path: str | Path, runtime: str = "torch", tta: bool = False) -> Predictor:
    """A predictor for a run or model folder (or shipped model name); errors are
    ModelLoadError, raised before any work."""
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    folder = checkpoint.model_folder(path)
    if runtime == "onnx":
        if tta:
            raise UserError("--tta runs on the torch runtime only")
        return OnnxPredictor(folder)
    model, info = checkpoint.load(folder)
    return TorchPredictor(model, tta=tta, temperature=temperature_of(info))


def temperature_of(info: dict) -> float:
    """The calibration temperature model.json records (1.0 when it records none)."""
    calibration = info.get("calibration") if isinstance(info, dict) else None
    value = calibration.get("temperature", 1.0) if isinstance(calibration, dict) else 1.0
    return float(value) if isinstance(value, (int, float)) and 0.01 <= value <= 100 else 1.0


def export_onnx(path: str | Path, output: str | Path | None = None) -> Path:
    """Write model.onnx beside a model's checkpoint, or into ``output`` with a copy of the
    model's two files (a model folder of its own, for either runtime): images in; angles and
    the head's raw output out (the raw output gives the ONNX runtime its confidence);
    dynamic batch. A shipped model is exported only into an ``output`` folder: never into
    the installed package."""
    from upright.shipped import SHIPPED_MODELS

    folder = checkpoint.model_folder(path)
    model, _ = checkpoint.load(folder)
    if output is None and folder.resolve() in {f.resolve() for f in SHIPPED_MODELS.values()}:
        raise UserError(f"{path}: a shipped model; export it into a folder of its own with --output DIR")
    if output is not None:
        folder = _model_copy(folder, Path(output))
    spec = model.spec
    wrapper = AnglePredictor(model).eval()
    example = torch.rand(2, spec.channels, spec.height, spec.width)
    target = folder / ONNX_FILE

    def write(tmp: Path) -> None:
        # The TorchScript exporter needs no onnxscript; its deprecation notice is noise here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the mask is fixed
            torch.onnx.export(wrapper, (example,), str(tmp), input_names=["images"],
                              output_names=["angles", "raw"],
                              dynamic_axes={"images": {0: "batch"}, "angles": {0: "batch"},
                                            "raw": {0: "batch"}},
                              dynamo=False, opset_version=17)

    fileio.write_with(target, write)
    return target


def _model_copy(folder: Path, output: Path) -> Path:
    """``output`` holding the model's config and weights (copied, unless it holds these very
    files already); another model's files there are an error, not overwritten."""
    import shutil

    if output.exists() and not output.is_dir():
        raise UserError(f"{output}: not a folder")
    output.mkdir(parents=True, exist_ok=True)
    for name in (checkpoint.CONFIG_FILE, checkpoint.WEIGHTS_FILE):
        source, copy = folder / name, output / name
        if copy.exists():
            if copy.read_bytes() != source.read_bytes():
                raise UserError(f"{copy}: another model's file is there; choose an empty --output folder")
            continue
        fileio.write_with(copy, lambda tmp, source=source: shutil.copyfile(source, tmp), overwrite=False)
    return output
