"""Several training processes on one machine: Lightning's DDP on CPU (gloo, 127.0.0.1),
started by Lightning itself and by ``torchrun`` as two nodes. Real processes, real files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support import TINY_RUN

PROBE = Path(__file__).parent / "ddp_probe.py"
pytestmark = pytest.mark.slow  # each starts 2-4 Python processes that import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("RANK", None)
    return env


def _run_together(commands: list[list[str]], timeout: float = 600) -> list[str]:
    """Run the processes side by side; each one's output (stderr merged), or a failure
    that shows every output if one fails or they overrun (a hang must say where)."""
    processes = [subprocess.Popen(c, env=_environment(), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for c in commands]
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in processes]
    except subprocess.TimeoutExpired:
        for p in processes:
            p.kill()
        outputs = [p.communicate()[0] for p in processes]
        pytest.fail(f"overran {timeout} s:\n" + "\n---\n".join(o[-3000:] for o in outputs))
    codes = [p.returncode for p in processes]
    assert codes == [0] * len(processes), "\n---\n".join(o[-3000:] for o in outputs)
    return outputs


def _traces(folder: Path) -> list[dict]:
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]


def _check_run(run: Path, traces: list[dict], train_images: int) -> None:
    """What any two-process run must show: the world size, disjoint shards that together
    are the epoch, equal weights, one run folder, metrics equal to one process's."""
    from upright import checkpoint
    from upright.experiments import evaluate, load_run_config, prepare_data

    assert [t["world_size"] for t in traces] == [2, 2]
    assert traces[0]["weights"] == traces[1]["weights"]  # the ranks ended as one model
    epochs = sorted(traces[0]["positions"], key=int)
    assert epochs == sorted(traces[1]["positions"], key=int)
    for epoch in epochs:
        mine, theirs = (t["positions"][epoch] for t in traces)
        assert len(mine) == len(theirs) > 0  # the same steps: a time budget stops both at once
        assert not set(mine) & set(theirs)
        if epoch != epochs[-1] or traces[0]["stopped_by"] != "max_time":  # a whole epoch
            assert set(mine) | set(theirs) == set(range(train_images * TINY_RUN["angles_per_epoch"]))
    assert traces[0]["samples_seen"] == traces[1]["samples_seen"] == sum(
        len(t["positions"][e]) for t in traces for e in t["positions"])
    # One folder, written once: what a one-process run writes (no report: not asked for).
    assert sorted(p.name for p in run.parent.iterdir()) == [run.name]
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.csv", "metrics.json",
                                                     "model.json", "model.safetensors",
                                                     "predictions.npz", "samples.npz"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["training"]["world_size"] == 2
    assert json.loads((run / "model.json").read_text())["training"]["world_size"] == 2
    assert traces[0]["test"] == traces[1]["test"] == metrics["test"]
    # The gathered evaluation equals this process evaluating the saved weights alone.
    config = load_run_config(run)
    model, info = checkpoint.load(run)
    _, splits = prepare_data(config)
    alone = evaluate(model, splits, config, progress=False, calibration=info["calibration"]).metrics
    for part in ("test", "train", "fixed_angles", "blank_content"):
        for key, value in metrics[part].items():
            if isinstance(value, float):
                assert value == pytest.approx(alone[part][key], rel=1e-5, abs=1e-6), (part, key)
    assert metrics["robustness"]["suite"]["mean_circular_mae"] == pytest.approx(
        alone["robustness"]["suite"]["mean_circular_mae"], rel=1e-5)
    assert metrics["calibration"]["test"]["ece"] == pytest.approx(
        alone["calibration"]["test"]["ece"], abs=1e-6)
    predictions = np.load(run / "predictions.npz")
    assert len(predictions["test_pred"]) == len(splits.test) * config.test_angles


def _train_images(folder: Path) -> int:
    from upright.experiments import prepare_data
    from upright.recipes import make_config

    config = make_config("mnist-published", {**TINY_RUN, "dataset": f"folder:{folder}", "cache": "on"})
    return len(prepare_data(config)[1].train)


def test_two_processes_started_by_lightning_train_one_model_on_a_streamed_folder(glyph_folder, tmp_path):
    run, trace = tmp_path / "runs" / "ddp", tmp_path / "trace"
    _run_together([[sys.executable, str(PROBE), str(glyph_folder), str(run), str(trace),
                    "--devices", "2", "--cache", "off"]])
    _check_run(run, _traces(trace), _train_images(glyph_folder))


def test_torchrun_as_two_nodes_trains_one_model(glyph_folder, tmp_path):
    run, trace = tmp_path / "runs" / "nodes", tmp_path / "trace"
    port = str(_free_port())
    _run_together([[sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                    "--nproc-per-node", "1", "--node-rank", str(rank),
                    "--master-addr", "127.0.0.1", "--master-port", port,
                    str(PROBE), str(glyph_folder), str(run), str(trace),
                    "--num-nodes", "2", "--max-time", "4"] for rank in (0, 1)])
    traces = _traces(trace)
    assert [t["stopped_by"] for t in traces] == ["max_time", "max_time"]
    assert len(traces[0]["positions"]) >= 2  # more than one epoch before the budget ran out
    _check_run(run, traces, _train_images(glyph_folder))


@pytest.mark.parametrize("launcher", ["lightning", "torchrun"])
def test_the_train_command_as_the_readme_gives_it_runs_ddp_and_only_rank_zero_speaks(
        glyph_folder, tmp_path, launcher):
    run = tmp_path / "runs" / "cli"
    train = ["train", "--recipe", "mnist-published", "--dataset", f"folder:{glyph_folder}",
             "--accelerator", "cpu", "--no-progress", "--no-report", "--runs-dir", str(run.parent),
             "--name", run.name]
    for key, value in {**TINY_RUN, "max_epochs": 1}.items():
        train += ["--set", f"{key}={json.dumps(value)}"]
    if launcher == "lightning":
        commands = [[sys.executable, "-m", "upright", *train, "--devices", "2", "--strategy", "ddp"]]
    else:  # the README's two-machine line, both "machines" here
        port = str(_free_port())
        commands = [[sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                     "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", port,
                     "-m", "upright", *train, "--num-nodes", "2"] for rank in (0, 1)]
    outputs = _run_together(commands)
    assert sum(out.count("run folder:") for out in outputs) == 1  # the summary once, from rank 0
    assert json.loads((run / "metrics.json").read_text())["training"]["world_size"] == 2
