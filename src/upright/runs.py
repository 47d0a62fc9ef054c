"""The run folder: every file name of a run, and all reading and writing of them.

``runs/<name>/`` holds config.json, the checkpoint (model.safetensors + model.json),
Lightning's metrics.csv, metrics.json, predictions.npz, samples.npz, plots/ and the report.
Nothing else in upright spells these names; every write is atomic (``upright.fileio``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from upright import checkpoint, fileio
from upright.config import TrainConfig, validate
from upright.errors import UserError

# Name parts of a run being trained and of one being replaced, beside their final place.
STAGING = "upright-training-"
REPLACED = "upright-replaced-"


class RunFolderError(FileNotFoundError):
    """A run folder lacks a file a job needs; the message names it and what writes it."""


class RunExistsError(UserError, ValueError):
    """A run folder of that name is there already (and --overwrite was not given)."""


class RunFolder:
    CONFIG = "config.json"
    MODEL_INFO = checkpoint.CONFIG_FILE  # model.json
    WEIGHTS = checkpoint.WEIGHTS_FILE  # model.safetensors
    LOG = "metrics.csv"  # Lightning's CSVLogger, per epoch
    METRICS = "metrics.json"
    PREDICTIONS = "predictions.npz"
    SAMPLES = "samples.npz"
    PLOTS = "plots"
    REPORT_HTML = "report.html"
    REPORT_MD = "report.md"
    ONNX = "model.onnx"
    # A folder with none of these is not a run, and --overwrite does not remove it.
    MARKERS = (CONFIG, MODEL_INFO, METRICS)
    # Everything upright puts in a run folder (``samples``: the quickstart's images);
    # a folder that holds anything else is someone's work, never replaced.
    OWN_NAMES = {CONFIG, MODEL_INFO, WEIGHTS, LOG, METRICS, PREDICTIONS, SAMPLES, PLOTS, REPORT_HTML,
                 REPORT_MD, ONNX, "samples", "hparams.yaml"}
    # Who writes what, for the error that says a file is missing.
    WRITTEN_BY = {CONFIG: "training", MODEL_INFO: "training", WEIGHTS: "training", LOG: "training",
                  METRICS: "evaluation", PREDICTIONS: "evaluation", SAMPLES: "evaluation",
                  ONNX: "upright export"}

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def need(self, name: str, purpose: str = "") -> Path:
        """The path of ``name``, or RunFolderError naming it and what writes it."""
        path = self.path / name
        if not path.is_file():
            if not self.path.is_dir():
                raise RunFolderError(f"{self.path}: no such run folder")
            by = self.WRITTEN_BY.get(name, "upright")
            raise RunFolderError(f"{path}: missing ({by} writes it){'; ' + purpose if purpose else ''}")
        return path

    def is_run(self) -> bool:
        return any((self.path / marker).exists() for marker in self.MARKERS)

    # ----- making and replacing -----
    def check_claim(self, overwrite: bool) -> bool:
        """Whether training into this folder replaces an existing run; RunExistsError where
        it must not (a file, a run without ``overwrite``, a folder that is not a run or holds
        files upright did not write). Reads only."""
        if not self.path.exists():
            return False
        if not self.path.is_dir():
            raise RunExistsError(f"{self.path}: exists and is not a folder")
        if not any(self.path.iterdir()):
            return False
        if not overwrite:
            raise RunExistsError(f"{self.path}: a run of that name exists; pass --overwrite "
                                 "to replace it or --name to choose another")
        if not self.is_run():
            raise RunExistsError(f"{self.path}: exists and is not a run folder; not replacing it")
        foreign = sorted(p.name for p in self.path.iterdir()
                         if p.name not in self.OWN_NAMES and not fileio.is_temp_name(p.name))
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise RunExistsError(f"{self.path}: holds files upright did not write ({shown}); "
                                 "not replacing it")
        return True

    def staging(self) -> RunFolder:
        """A new, empty folder beside this one to train into; ``publish`` puts it in this
        one's place once the run is whole, so a run that fails or is stopped leaves an
        earlier run of the name as it was."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.{STAGING}", dir=self.path.parent))
        staged.chmod(0o777 & ~fileio.current_umask())  # mkdtemp's 0700 would make the run private
        return RunFolder(staged)

    def publish(self, staged: RunFolder) -> None:
        """The staged run takes this folder's place; what was here (a run ``check_claim``
        allowed replacing, or an empty folder) is moved aside first and removed last, so an
        interruption between the two renames leaves it beside, not lost."""
        aside = None
        if os.path.lexists(self.path):
            aside = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.{REPLACED}", dir=self.path.parent))
            os.replace(self.path, aside / self.path.name)
        try:
            os.replace(staged.path, self.path)
        except BaseException:  # (an interrupt between the renames too) the old run goes back
            if aside is not None and not os.path.lexists(self.path):
                os.replace(aside / self.path.name, self.path)
            raise
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    # ----- config.json -----
    def write_config(self, config: TrainConfig) -> None:
        fileio.write_json(self.path / self.CONFIG, config.to_dict())

    def config(self) -> TrainConfig:
        path = self.need(self.CONFIG, f"is {self.path} a run folder?")
        data = _read_json(path)
        if not isinstance(data, dict) or not data:
            raise RunFolderError(f"{path}: empty or not a JSON object; retrain the run")
        if not isinstance(data.get("model", {}), dict):
            raise RunFolderError(f"{path}: \"model\" is not a JSON object; retrain the run")
        try:  # every setting checked as a command line's would be: a file is input too
            return validate(TrainConfig.from_dict(data))
        except (TypeError, ValueError, AttributeError) as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunFolderError(f"{path}: {text}") from None

    def config_dict(self) -> dict[str, Any]:
        """config.json as written (the report shows it verbatim)."""
        return _read_json(self.need(self.CONFIG))

    # ----- model.json (the checkpoint's description) -----
    def model_info(self) -> dict[str, Any]:
        return checkpoint.read_config(self.path)

    # ----- metrics.json -----
    def write_metrics(self, metrics: dict[str, Any]) -> None:
        fileio.write_json(self.path / self.METRICS, metrics, strict=False)

    def metrics(self, purpose: str = "") -> dict[str, Any]:
        return _read_json(self.need(self.METRICS, purpose))

    # ----- predictions.npz and samples.npz -----
    def write_predictions(self, arrays: dict[str, np.ndarray]) -> None:
        _write_npz(self.path / self.PREDICTIONS, arrays)

    def predictions(self, purpose: str = "") -> dict[str, np.ndarray]:
        return _read_npz(self.need(self.PREDICTIONS, purpose))

    def write_samples(self, arrays: dict[str, np.ndarray]) -> None:
        _write_npz(self.path / self.SAMPLES, arrays)

    def samples(self, purpose: str = "") -> dict[str, np.ndarray]:
        return _read_npz(self.need(self.SAMPLES, purpose))

    # ----- plots and report -----
    @property
    def plots_dir(self) -> Path:
        return self.path / self.PLOTS

    def plot(self, name: str) -> Path:
        return self.plots_dir / f"{name}.png"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise RunFolderError(f"{path}: not readable JSON ({type(exc).__name__}); rerun the job "
                             "that writes it") from exc


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    fileio.write_with(path, lambda tmp: np.savez_compressed(str(tmp), **arrays))


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Plain arrays only (no pickle); a damaged file is a one-line error naming it."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        # numpy takes a file that is no zip for a pickle and suggests allow_pickle=True:
        # never, for a file anyone could have put there.
        text = "not a zip of arrays" if "pickle" in str(exc) else (
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise RunFolderError(f"{path}: damaged or truncated ({text}); rerun the evaluation") from exc
