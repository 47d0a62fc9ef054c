import csv
import json

import numpy as np
import pytest
import torch

from upright import checkpoint
from upright.data.rotated import protocol_set, to_float_images
from upright.evaluation import predict_set
from upright.experiments import evaluate_run, load_run_config, prepare_data
from upright.geometry import rotate_batch


def _epoch_losses(run_dir, key):
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get(key)]
    return [float(r[key]) for r in rows]


def test_short_training_makes_the_loss_fall(tiny_run):
    train = _epoch_losses(tiny_run, "train_loss")
    val = _epoch_losses(tiny_run, "val_loss")
    assert len(train) == 4 and len(val) == 4
    assert train[-1] < 0.8 * train[0]
    assert min(val) < val[0]


def test_run_folder_holds_config_checkpoint_and_metrics(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert {"config.json", "model.safetensors", "model.json", "metrics.csv",
            "metrics.json", "predictions.npz"} <= names
    model_json = json.loads((tiny_run / "model.json").read_text())
    assert model_json["model"]["backbone"] == "seed_mnist"
    assert model_json["model"]["head"] == "softsign180"
    assert model_json["data"]["images"]["test"] == 15  # a quarter of the 60 glyph files
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    test = metrics["test"]
    assert test["count"] == 15 * 4
    for key in ("circular_mae", "linear_mae", "median_error", "p95_error",
                "within_1", "within_2", "within_5", "within_10"):
        assert np.isfinite(test[key])
    assert test["circular_mae"] <= test["linear_mae"] + 1e-9
    assert 0 <= test["within_1"] <= test["within_5"] <= test["within_10"] <= 1
    per_angle = metrics["fixed_angles"]["per_angle"]
    assert sorted(int(a) for a in per_angle) == sorted(
        [-175, -150, -120, -90, -60, -25, 0, 25, 60, 90, 120, 150, 175])
    assert model_json["metrics"]["test"] == test
    # config.json is the whole config: reading it back gives the run's data protocol again.
    config = load_run_config(tiny_run)
    assert config.to_dict() == json.loads((tiny_run / "config.json").read_text())
    assert len(prepare_data(config)[1].test) == model_json["data"]["images"]["test"]


def test_checkpoint_round_trip_gives_identical_predictions(tiny_run, tmp_path):
    model, _ = checkpoint.load(tiny_run)
    config = load_run_config(tiny_run)
    _, splits = prepare_data(config)
    rotated = protocol_set(splits.test.images[:64], splits.test.indices[:64], 2, 1)
    before = predict_set(model, rotated, 32)
    checkpoint.save(tmp_path / "copy", model, {"note": "copy"})
    again, info = checkpoint.load(tmp_path / "copy" / "model.json")
    assert info["note"] == "copy"
    np.testing.assert_array_equal(before, predict_set(again, rotated, 32))
    x = rotate_batch(to_float_images(torch.from_numpy(splits.test.images[:8])),
                     torch.zeros(8))
    assert torch.equal(model(x), again(x))


def test_evaluate_reproduces_the_metrics_exactly(tiny_run):
    saved = json.loads((tiny_run / "metrics.json").read_text())
    again = evaluate_run(tiny_run, progress=False)
    for part in ("test", "train", "fixed_angles", "per_group"):
        assert again[part] == saved[part]


@pytest.mark.parametrize("edit, message", [
    ({"test_angles": 8}, "test_angles is 8, but the run was tested with 4"),
    ({"eval_seed": 7}, "eval_seed is 7, but the run was tested with 2024"),
    ({"dataset": "mnist"}, "dataset is 'mnist', but the run was made on 'folder:"),
])
def test_evaluate_refuses_a_config_edited_to_another_protocol(tiny_run, tmp_path, edit, message):
    """config.json asks for another test protocol than model.json says the run was tested
    with: one line naming the file and both values, and nothing rewritten (before, the
    run's metrics were recomputed on the other protocol under the same record)."""
    import shutil

    from upright.errors import DatasetError

    copy = tmp_path / "edited"
    shutil.copytree(tiny_run, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, **edit}))
    before = {f.name: f.read_bytes() for f in copy.iterdir() if f.is_file()}
    with pytest.raises(DatasetError, match=f"^{copy / 'config.json'}: {message}"):
        evaluate_run(copy, progress=False, report=False)
    assert {f.name: f.read_bytes() for f in copy.iterdir() if f.is_file()} == before


def test_evaluate_accepts_a_folder_that_moved(tiny_run, tmp_path, glyph_folder):
    """The folder's path is not the protocol: moved and named anew in config.json, the same
    files evaluate to the same metrics."""
    import shutil

    copy, moved = tmp_path / "run", tmp_path / "moved-glyphs"
    shutil.copytree(tiny_run, copy)
    shutil.copytree(glyph_folder, moved)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "dataset": f"folder:{moved}"}))
    saved = json.loads((tiny_run / "metrics.json").read_text())
    assert evaluate_run(copy, progress=False, report=False)["test"] == saved["test"]


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "model.safetensors").write_bytes(b"garbage"), "safetensors"),
    (lambda d: (d / "model.json").write_text("{not json"), "JSON"),
    (lambda d: (d / "model.json").write_text('{"format": "other"}'), "not an upright model"),
    (lambda d: (d / "model.safetensors").unlink(), "missing"),
])
def test_damaged_checkpoints_give_clear_errors(tiny_run, tmp_path, damage, message):
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(tiny_run, copy)
    damage(copy)
    with pytest.raises(checkpoint.ModelLoadError, match=message):
        checkpoint.load(copy)


def test_loading_never_unpickles(tiny_run, monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    checkpoint.load(tiny_run)


def test_blank_content_check_returns_numbers(tiny_run):
    blank = json.loads((tiny_run / "metrics.json").read_text())["blank_content"]
    assert blank["count"] == 15 * 4
    assert 0 <= blank["circular_mae"] <= 180
    assert 0 <= blank["within_5_modulo_90"] <= 1


def test_blank_content_images_keep_only_the_corner_cue():
    from upright.evaluation import blank_content_set, modulo_90_error

    images = np.random.default_rng(0).integers(0, 255, (3, 8, 8), dtype=np.uint8)
    blank = blank_content_set(images, np.arange(3), 2, seed=1)
    for img, original in zip(blank.images, images, strict=True):
        assert len(np.unique(img)) == 1 and abs(int(img[0, 0]) - original.mean()) <= 0.5
    np.testing.assert_allclose(modulo_90_error(np.array([95.0, -178.0]), np.array([3.0, 2.0])),
                               [2.0, 0.0])


def test_cosine_schedule_warms_up_then_anneals_to_zero():
    from upright.training import cosine_factor

    assert cosine_factor(0, 100, 10) == pytest.approx(0.1)
    assert cosine_factor(9, 100, 10) == pytest.approx(1.0)
    assert cosine_factor(55, 100, 10) == pytest.approx(0.5)
    assert cosine_factor(100, 100, 10) == pytest.approx(0.0, abs=1e-12)


def test_cosine_schedule_follows_the_clock_under_a_time_budget():
    from upright.training import cosine_factor

    # 20 of 10,000 planned steps, but the budget is half spent: the rate is half way down.
    assert cosine_factor(20, 10_000, 10, elapsed=30.0, budget=60.0) == pytest.approx(0.5, abs=0.01)
    assert cosine_factor(20, 10_000, 10, elapsed=60.0, budget=60.0) == pytest.approx(0.0, abs=1e-12)
    # Without a budget the clock is ignored.
    assert cosine_factor(20, 10_000, 10, elapsed=60.0) > 0.99
    # Ahead of the budget's pace (half the steps in a third of the time) the steps alone set
    # the rate, to the bit: the clock's jitter cannot make two runs of one seed differ.
    steps_only = cosine_factor(5_000, 10_000, 10)
    assert cosine_factor(5_000, 10_000, 10, elapsed=20.0, budget=60.0) == steps_only
    assert cosine_factor(5_000, 10_000, 10, elapsed=20.5, budget=60.0) == steps_only
    # Just after the warm-up, a slow start (a worker's start-up, the first step's allocations)
    # is no reason to leave the steps' schedule either.
    assert cosine_factor(11, 10_000, 10, elapsed=5.0, budget=6_000.0) == cosine_factor(11, 10_000, 10)


def test_run_stopped_by_the_clock_still_validates_its_final_weights(tmp_path, glyph_folder):
    from support import TINY_RUN
    from upright.experiments import train_run
    from upright.recipes import make_config

    # One epoch would take far longer than the budget: only the clock can stop it.
    config = make_config("mnist-compact", {
        **TINY_RUN, "dataset": f"folder:{glyph_folder}", "max_epochs": 5, "angles_per_epoch": 1000,
        "max_time": 2.0})
    metrics = train_run(config, tmp_path / "run", progress=False, report=False)
    assert metrics["training"]["stopped_by"] == "max_time"
    assert metrics["training"]["best_epoch"] is not None  # the end-of-budget validation counted
    # Lightning validates the interrupted epoch once: the annealed weights are judged.
    assert len(_epoch_losses(tmp_path / "run", "val_loss")) == 1
    # How far 4 s of training gets depends on the machine's speed: only check that it trained
    # and was scored (an accuracy bound here failed on a busy CI machine).
    assert metrics["training"]["samples_seen"] > 0
    assert 0 < metrics["test"]["circular_mae"] < 180
    # Peak memory is reported in MB: torch alone is over 100 MB, and this run is far from GBs.
    assert 100 < metrics["training"]["peak_rss_mb"] < 4096


def test_cli_passes_training_fields_to_the_recipe():
    from upright.cli import _config_from_args, build_parser

    args = build_parser().parse_args([
        "train", "--recipe", "mnist-fast", "--eval-batch-size", "32", "--train-resamplers",
        "bilinear", "cubic", "--train-sharpness", "0.5", "--backbone-option", "dense=96"])
    config = _config_from_args(args)
    assert config.eval_batch_size == 32
    assert config.train_resamplers == ["bilinear", "cubic"] and config.train_sharpness == 0.5
    assert config.batch_size == 64  # untouched recipe fields stay the recipe's
    # A backbone option given on the command line adds to the recipe's options...
    assert config.model.backbone_options == {"widths": [16, 32, 64], "dense": 96}
    # ...unless it names another backbone, whose options start empty.
    args = build_parser().parse_args(["train", "--recipe", "mnist-fast", "--backbone", "seed_mnist"])
    assert _config_from_args(args).model.backbone_options == {}


def test_fast_recipe_uses_a_lighter_network_than_the_compact_one():
    from upright.models.model import AngleModel
    from upright.recipes import make_config

    def parameters(recipe):
        spec = make_config(recipe).model
        spec.height = spec.width = 28
        return sum(p.numel() for p in AngleModel(spec).parameters())

    assert parameters("mnist-fast") < 0.5 * parameters("mnist-compact")


def test_cubic_parameter_range_comes_from_the_recipe_or_the_command_line(tmp_path):
    from upright.cli import _config_from_args, build_parser
    from upright.recipes import make_config
    from upright.training import fit

    assert make_config("mnist-compact").train_cubic_a == [-1.0, -0.5]
    assert make_config("mnist-compact", {"train_cubic_a": [-1.25, -0.75]}).train_cubic_a == [-1.25, -0.75]
    args = build_parser().parse_args(["train", "--recipe", "mnist-robust", "--train-cubic-a", "-1.5", "-1"])
    assert _config_from_args(args).train_cubic_a == [-1.5, -1.0]
    # Refused when the config is made, before any work (the training's own check is a backstop).
    with pytest.raises(ValueError, match="train_cubic_a: LOW -0.5 is above HIGH -1.0"):
        make_config("mnist-robust", {"train_cubic_a": [-0.5, -1.0]})
    with pytest.raises(ValueError, match="train_cubic_a: expected 2 values, got 1"):
        make_config("mnist-robust", {"train_cubic_a": [-1.0]})
    config = make_config("mnist-robust")
    config.train_cubic_a = [-0.5, -1.0]  # set behind validate's back
    with pytest.raises(ValueError, match="train_cubic_a must be"):
        fit(None, None, config, tmp_path)


def test_training_images_are_quantised_to_8_bits_when_asked():
    from upright.cli import _config_from_args, build_parser
    from upright.models.model import AngleModel
    from upright.recipes import make_config
    from upright.training import AngleModule

    assert make_config("mnist-fast").train_quantise is False
    assert make_config("mnist-robust").train_quantise is True
    args = build_parser().parse_args(["train", "--recipe", "mnist-fast", "--train-quantise"])
    config = _config_from_args(args)
    assert config.train_quantise is True
    seen = []
    model = AngleModel(config.model)
    features = model.features
    model.features = lambda x: (seen.append(x.detach()), features(x))[1]
    images = torch.randint(0, 256, (8, 28, 28), dtype=torch.uint8)
    angles = torch.tensor([13.3, 47.9, -101.2, 170.5, 2.2, -33.3, 88.8, -150.1])
    for quantise in (True, False):
        module = AngleModule(model, make_config("mnist-fast", {"train_quantise": quantise}))
        module.log = lambda *a, **k: None
        module._step((images, angles), "train")
    on_grid = [bool(torch.allclose(x * 255, torch.round(x * 255), atol=1e-4)) for x in seen]
    assert on_grid == [True, False]


def test_unknown_rotation_steps_is_a_clear_error(tmp_path):
    from upright.recipes import make_config
    from upright.training import fit

    with pytest.raises(ValueError, match="train_rotation_steps: 3 is not one of 1, 2"):
        make_config("mnist-fast", {"train_rotation_steps": 3})
    config = make_config("mnist-fast")
    config.train_rotation_steps = 3  # set behind validate's back
    with pytest.raises(ValueError, match="train_rotation_steps must be one of"):
        fit(None, None, config, tmp_path)


def test_automatic_precision_is_bf16_only_where_the_processor_has_bf16_units():
    from upright.training import resolve_precision

    assert resolve_precision("auto", "cpu", {"avx2", "fma"}) == "32-true"
    assert resolve_precision("auto", "cpu", {"avx2", "amx_bf16", "amx_tile"}) == "bf16-mixed"
    assert resolve_precision("auto", "cpu", {"avx512f", "avx512_bf16"}) == "bf16-mixed"
    assert resolve_precision("32-true", "cpu", {"amx_bf16"}) == "32-true"  # said: kept
    assert resolve_precision("bf16-mixed", "cpu", set()) == "bf16-mixed"


def test_the_steady_clock_leaves_out_the_first_step_and_validation_between_steps(monkeypatch):
    from upright import training

    now = [0.0]
    monkeypatch.setattr(training.time, "perf_counter", lambda: now[0])
    clock = training.StepClock()
    batch = (None, [0] * 10)

    def at(t, event):
        now[0] = t
        event()

    at(5.0, lambda: clock.on_train_batch_end(None, None, None, batch, 0))   # first step: start-up
    at(6.0, lambda: clock.on_train_batch_end(None, None, None, batch, 1))
    at(6.0, lambda: clock.on_validation_start(None, None))
    at(16.0, lambda: clock.on_validation_end(None, None))                   # 10 s between steps
    at(17.0, lambda: clock.on_train_batch_end(None, None, None, batch, 2))
    at(17.0, lambda: clock.on_validation_start(None, None))
    at(60.0, lambda: clock.on_validation_end(None, None))                   # after the last step
    assert clock.images_per_second() == 20 / 2.0  # 20 images in 12 s less 10 s of validation


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_the_optimiser_is_fused_where_torch_can_and_steps_as_the_plain_one(weight_decay):
    from upright.models.model import AngleModel, ModelSpec
    from upright.recipes import make_config
    from upright.training import make_optimizer

    config = make_config("mnist-robust", {"weight_decay": weight_decay})
    models = []
    for fused in (True, False):
        torch.manual_seed(0)
        model = AngleModel(ModelSpec(backbone="compact", head="bins"))
        optimiser = (make_optimizer(model.parameters(), config) if fused else
                     (torch.optim.AdamW if weight_decay else torch.optim.Adam)(
                         model.parameters(), lr=config.lr, eps=config.adam_eps,
                         **({"weight_decay": weight_decay} if weight_decay else {})))
        if fused:
            assert optimiser.defaults.get("fused") is True  # torch >= 2.4 has it on CPU
            assert isinstance(optimiser, torch.optim.AdamW) == bool(weight_decay)
        torch.manual_seed(1)
        for _ in range(3):
            for p in model.parameters():
                p.grad = torch.randn_like(p)
            optimiser.step()
        models.append(model)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_one_seed_trains_the_same_weights_twice_under_a_time_budget(glyph_folder, tmp_path):
    """The robust recipe's random augmentation and a cosine schedule with a time budget: the
    clock (whose reading differs from run to run) must not move the rate while the run keeps
    ahead of the budget's pace."""
    from upright.experiments import fit_input_format
    from upright.models.model import AngleModel
    from upright.recipes import make_config
    from upright.training import fit

    config = make_config("mnist-robust", {"dataset": f"folder:{glyph_folder}", "max_epochs": 2,
                                          "max_time": 3600.0, "batch_size": 8, "seed": 3,
                                          "model.backbone_options": {"widths": [8, 16], "dense": 32}})
    weights = []
    for run in range(2):
        source, splits = prepare_data(config)
        fit_input_format(config, source)
        torch.manual_seed(0)
        model = AngleModel(config.model)
        fit(model, splits, config, tmp_path / f"run{run}", progress=False)
        weights.append(torch.cat([p.detach().flatten() for p in model.state_dict().values()
                                  if p.is_floating_point()]))
    assert torch.equal(weights[0], weights[1])


def test_step_budget_stops_training_at_its_step_and_validates_it(tmp_path, glyph_folder):
    from support import TINY_RUN
    from upright.experiments import train_run
    from upright.recipes import make_config

    # One epoch is 1,000 turns of each glyph: only the step budget can stop it, mid-epoch.
    config = make_config("mnist-compact", {
        **TINY_RUN, "dataset": f"folder:{glyph_folder}", "max_epochs": 5, "angles_per_epoch": 1000,
        "max_steps": 7, "max_time": 600.0})
    metrics = train_run(config, tmp_path / "run", progress=False, report=False)
    training = metrics["training"]
    assert training["stopped_by"] == "max_steps"
    assert training["samples_seen"] == 7 * config.batch_size  # the machine's speed does not count
    assert training["best_epoch"] is not None  # the interrupted epoch was validated, as the clock's
    assert len(_epoch_losses(tmp_path / "run", "val_loss")) == 1


def test_a_step_budget_spent_in_the_last_epoch_is_named_as_the_reason():
    from types import SimpleNamespace

    from upright.recipes import make_config
    from upright.training import _stop_reason

    # 10 steps an epoch, 3 epochs, a budget of 25: Lightning's epoch count is full as well.
    trainer = SimpleNamespace(callbacks=[], current_epoch=3, global_step=25)
    config = make_config("mnist-compact", {"max_epochs": 3, "max_steps": 25})
    assert _stop_reason(trainer, config) == "max_steps"
    assert _stop_reason(trainer, make_config("mnist-compact", {"max_epochs": 3})) == "max_epochs"
