"""upright: learn the rotation angle of an image with a CNN and turn images back upright.

Correct files with a shipped model (`upright correct photos/ -o upright/`), train your
own on MNIST, the Olivetti faces or a folder of images (`upright train`), and see what a
model does (`upright demo`). Each command has its own --help."""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from upright import settings
from upright.models.heads import HEADS

DEFAULT_RUNS = Path("runs")


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '1h30m' -> seconds; an argparse type."""
    try:
        return settings.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bounded(kind, low: float, high: float | None = None):
    """An argparse type: ``kind`` (int or float) in [low, high], finite; the error names the
    bound (argparse adds the flag)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: "
                                             f"{text!r}") from None
        if not math.isfinite(value) or value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise argparse.ArgumentTypeError(f"{text!r} is out of range ({span})")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


positive_int = _bounded(int, 1)


def fill_colour(text: str) -> tuple[int, ...]:
    from upright.correction import parse_fill

    try:
        return parse_fill(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_assignment(text: str) -> tuple[str, str]:
    """KEY=VALUE, both as text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def parse_option(text: str) -> tuple[str, Any]:
    """KEY=VALUE with VALUE read as JSON where it parses (numbers, lists), else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


SETTING = "setting:"  # argparse dest prefix of the flags generated from the settings


def _setting_parser(key: str, f):
    """An argparse type for one value of setting ``key``, checked against its declaration."""
    from upright.config import ConfigError, check_item, value_kind

    item_type = value_kind(f)[0]

    def parse(text: str):
        try:
            if f.metadata["text"] is not None:
                value = f.metadata["text"](text)
            elif item_type in ("int", "float"):
                value = float(text) if item_type == "float" else int(text)
            else:
                value = text
            return check_item(key, f, item_type, value)
        except ValueError as exc:  # ConfigError too: argparse names the flag
            message = str(exc).removeprefix(f"{key}: ") if isinstance(exc, ConfigError) or \
                f.metadata["text"] else f"not {'an integer' if item_type == 'int' else 'a number'}: {text!r}"
            raise argparse.ArgumentTypeError(message) from None
    parse.__name__ = item_type
    return parse


def _train_arguments(p: argparse.ArgumentParser) -> None:
    """The run's own options, then one flag per setting (generated from its declaration),
    grouped by section, each with its help and TrainConfig's default."""
    from upright.config import setting_fields, value_kind
    from upright.recipes import RECIPES
    from upright.settings import SECTIONS, default_of

    run = p.add_argument_group("run")
    run.add_argument("--recipe", default="mnist-published", choices=sorted(RECIPES),
                     help="named settings to start from (src/upright/recipes/*.toml; default "
                          "%(default)s); every flag below overrides one of them")
    run.add_argument("--set", action="append", type=parse_assignment, default=[], metavar="KEY=VALUE",
                     help="any setting by name, e.g. --set lr=0.003 --set model.head=bins "
                          "(values read as JSON where they parse)")
    run.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS,
                     help="where run folders go (default %(default)s)")
    run.add_argument("--name", help="run folder name (default: recipe and time)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an existing run folder of that name")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--no-report", action="store_true", help="skip plots and report.html")
    groups = {section: p.add_argument_group(f"{title} settings") for section, title in SECTIONS.items()}
    for key, f in setting_fields().items():
        meta = f.metadata
        if meta["derived"] or not meta["cli"]:
            continue
        flag = "--" + (meta["flag"] or key.removeprefix("model.").replace("_", "-"))
        item_type, is_list, optional = value_kind(f)
        default = default_of(f)
        shown_default = (" ".join(map(str, default)) if isinstance(default, list)
                         else "none" if default in (None, {}) else default)
        text = f"{meta['help']} (default {shown_default}, or the recipe's)".replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": SETTING + key, "default": None, "help": text,
                                  "metavar": meta["metavar"] or key.removeprefix("model.").upper()}
        if item_type == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif item_type.startswith("dict"):
            kwargs.update(action="append", type=parse_option)
        else:
            kwargs["type"] = _setting_parser(key, f)
            if meta["choices"]:
                kwargs["choices"] = list(meta["choices"])
                kwargs.pop("metavar", None)
            if is_list:
                kwargs["nargs"] = meta["length"] or ("*" if optional else "+")
        groups[meta["section"]].add_argument(flag, **kwargs)


def _config_from_args(args: argparse.Namespace, **forced: Any):
    from upright.config import coerce
    from upright.recipes import make_config

    overrides: dict[str, Any] = {}
    for dest, value in vars(args).items():
        if dest.startswith(SETTING) and value is not None:
            key = dest.removeprefix(SETTING)
            overrides[key] = dict(value) if key.endswith("_options") else value
    for key, text in args.set:  # --set: any setting, checked against its declaration
        overrides[key] = coerce(key, text)
    overrides.update(forced)
    return make_config(args.recipe, overrides)


def _run_dir(args: argparse.Namespace) -> Path:
    name = args.name or f"{args.recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
    return args.runs_dir / name


def _command_line() -> str:
    import shlex

    return "upright " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _print_metrics(metrics: dict[str, Any], run_dir: Path) -> None:
    from upright.evaluation import format_robustness, format_summary

    print(f"test:  {format_summary(metrics['test'])}")
    print(f"train: {format_summary(metrics['train'])}")
    for line in format_robustness(metrics):
        print(line)
    print(f"run folder: {run_dir}")


def cmd_train(args: argparse.Namespace) -> int:
    from upright.experiments import train_run

    config = _config_from_args(args)
    run_dir = _run_dir(args)
    # (Lightning takes SIGTERM over while it fits; before and after, the job's handler.)
    with _file_job():
        metrics = train_run(config, run_dir, progress=not args.no_progress, report=not args.no_report,
                            command=_command_line(), overwrite=args.overwrite)
    from upright import distributed

    if distributed.rank() == 0:  # under DDP every rank has the metrics; one says them
        _print_metrics(metrics, run_dir)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from upright.experiments import evaluate_run

    metrics = evaluate_run(args.run, progress=not args.no_progress, report=not args.no_report)
    _print_metrics(metrics, Path(args.run))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from upright.experiments import calibrate_model_folder

    result = calibrate_model_folder(args.model, progress=not args.no_progress)
    test, selective = result["test"], result["selective"]
    print(f"temperature {result['calibration']['temperature']:.3f} (fitted on "
          f"{result['calibration']['items']:,} validation items)")
    print(f"test protocol: ECE {test['ece']:.4f}, mean confidence {test['mean_confidence']:.3f}, "
          f"within 5 deg {test['within_5']:.1%}")
    within = selective["within_5_accepted"]
    print(f"at --min-confidence {selective['min_confidence']}: {selective['coverage']:.1%} turned, "
          f"{'-' if within is None else f'{within:.1%}'} of them within 5 deg")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from upright.report import write_report

    html_path, md_path = write_report(args.run)
    print(f"report: {html_path} and {md_path}")
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM too: stop, write the report of what was done


@contextmanager
def _file_job() -> Iterator[None]:
    """A job over many image files: SIGTERM stops it as Ctrl-C does (its cleanup runs, then
    exit 130), and Pillow's decompression-bomb warning stays out of its output (upright has
    its own pixel limit, a per-file error; Pillow's lower threshold would only print noise
    for every big photo)."""
    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_correct(args: argparse.Namespace) -> int:
    from upright import api
    from upright.names import shown

    if args.output is None and not args.dry_run:
        args.parser.error("the following arguments are required: -o/--output (or use --dry-run)")
    model = api.load(args.model, args.runtime, tta=args.tta)  # before any work
    with _file_job():
        results = api.correct(args.paths, args.output, model, progress=not args.no_progress,
                              canvas=args.canvas, fill=args.fill, threshold=args.threshold,
                              dry_run=args.dry_run, overwrite=args.overwrite,
                              min_confidence=args.min_confidence,
                              allow_input_folder=args.allow_input_folder,
                              jpeg_quality=args.jpeg_quality, batch_size=args.batch_size,
                              workers=args.workers, memory_budget=args.memory_budget << 20)
    failed = [r for r in results if r.action == "failed"]
    # Names are escaped (shown): a newline in a file name cannot forge a line here.
    for r in failed:
        print(f"error: {shown(r.error)}", file=sys.stderr)
    for r in results:
        if r.action == "skipped":
            print(f"skipped: {shown(r.error)}", file=sys.stderr)
    if args.dry_run:
        for r in results:
            if r.angle is not None:
                sure = "" if r.confidence is None else f"  {r.confidence:4.2f}"
                print(f"{r.angle:8.2f}{sure}  {r.action:<11}  {shown(r.file)}")
    counts = {a: sum(r.action == a for r in results)
              for a in ("rotated", "kept-small", "kept-unsure", "predicted", "kept", "skipped")}
    summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
    if results.stale_removed:
        print(f"removed {results.stale_removed} temporary file(s) an interrupted run left",
              file=sys.stderr)
    where = f"; report: {shown(results.report)}" if results.report else ""
    print(f"{summary or '0 corrected'}, {len(failed)} failed{where}")
    return 1 if failed else 0


def cmd_serve(args: argparse.Namespace) -> int:
    from upright.errors import UserError

    try:
        from upright.serve.app import serve
    except ImportError as exc:
        raise UserError(f"upright serve needs FastAPI and uvicorn ({exc.name} is missing): "
                        "pip install -e \".[serve]\"") from None
    serve(args.host, args.port, args.model, args.max_mb << 20, args.concurrency)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from upright.predictors import export_onnx

    path = export_onnx(args.run, args.output)
    print(f"wrote {path} (config: {path.parent / 'model.json'})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from upright.demo import demo

    demo(args.output, args.model, args.count, progress=not args.no_progress, full=not args.samples_only)
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from upright.quickstart import quickstart

    quickstart(args.runs_dir, args.max_time, progress=not args.no_progress, max_steps=args.max_steps)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from upright.compare import compare
    from upright.recipes import make_config

    config = _config_from_args(args)  # validates the options
    overrides = {k: v for k, v in config.to_dict().items()
                 if v != make_config(args.recipe).to_dict().get(k)}
    out = args.output or args.runs_dir / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    compare(args.heads, args.runs, out, args.recipe, overrides, progress=not args.no_progress,
            report=not args.no_report, overwrite=args.overwrite)
    print((Path(out) / "compare.md").read_text())
    print(f"comparison folder: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from upright import __version__
    from upright.confidence import DEFAULT_MIN_CONFIDENCE

    parser = argparse.ArgumentParser(
        prog="upright", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  upright demo\n  upright correct scans/ -o upright/ --canvas expand\n"
               "  upright train --recipe mnist-fast --max-time 2m\n"
               "  upright train --dataset folder:photos/ --image-size 64 --colour rgb")
    parser.add_argument("--version", action="version", version=f"upright {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a recipe into a run folder, then evaluate it")
    _train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("compare", help="train every chosen head under the same budget, N runs "
                       "each, and tabulate them (compare.md, compare.json, compare.png)")
    _train_arguments(p)
    p.add_argument("--heads", nargs="+", default=sorted(HEADS), choices=sorted(HEADS))
    p.add_argument("--runs", type=positive_int, default=3, help="runs (seeds 0..N-1) per head")
    p.add_argument("-o", "--output", type=Path, help="comparison folder")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("evaluate", help="re-evaluate a run folder (writes metrics.json)")
    p.add_argument("run", type=Path)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-report", action="store_true", help="skip plots and report.html")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("calibrate", help="fit a saved model's confidence temperature on its "
                       "validation split and record it in its model.json (runs retrain-free)")
    p.add_argument("model", help="run or model folder (a shipped name: its installed folder)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("report", help="draw a run's plots and write report.html and report.md")
    p.add_argument("run", type=Path)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("correct", help="turn image files upright")
    p.add_argument("paths", nargs="+", type=Path, help="image files or folders (recursive)")
    p.add_argument("--model", default="mnist",
                   help="run or model folder, or a shipped model: mnist (default), faces")
    p.add_argument("-o", "--output", type=Path, help="output folder (mirrors the input tree)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average over the four quarter turns")
    p.add_argument("--canvas", default="same", choices=["same", "expand", "crop"],
                   help="same: input size; expand: whole image fits; crop: largest upright "
                        "rectangle without fill")
    p.add_argument("--fill", default=(0, 0, 0), type=fill_colour,
                   help="corner colour: black, white, 128, #rrggbb, r,g,b; with an alpha for "
                        "images that have one (#rrggbbaa, r,g,b,a; else transparent)")
    p.add_argument("--threshold", type=_bounded(float, 0.0), default=0.0,
                   help="copy images with |predicted angle| below this many degrees unchanged")
    p.add_argument("--min-confidence", type=_bounded(float, 0.0, 1.0), default=DEFAULT_MIN_CONFIDENCE,
                   metavar="P", help="copy images unchanged whose calibrated chance of being within 5 "
                                     "degrees is below P (default %(default)s; 0 turns every image; "
                                     "models without a distribution have no confidence)")
    p.add_argument("--dry-run", action="store_true", help="only predict and report")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--allow-input-folder", action="store_true",
                   help="allow the output folder inside an input folder")
    p.add_argument("--jpeg-quality", type=_bounded(int, 1, 100), default=95,
                   help="JPEG/WebP quality, 1 to 100 (default 95)")
    p.add_argument("--runtime", default="torch", choices=["torch", "onnx"])
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--memory-budget", type=_bounded(int, 16, 1 << 20), default=512, metavar="MB",
                   help="decoded image data in flight at once, in MiB (default 512); a bigger "
                        "image is corrected alone")
    p.add_argument("--workers", type=_bounded(int, 1, 256),
                   help="decode/encode threads (default: the CPU count plus one)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_correct, parser=p)

    p = sub.add_parser("serve", help="an HTTP API (POST /v1/angle, /v1/upright; docs at /docs) "
                       "and a page at / to drop images on")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=_bounded(int, 1, 65535), default=8000)
    p.add_argument("--model", default="mnist", help="default model: a shipped name or a run/model folder")
    p.add_argument("--max-mb", type=_bounded(int, 1, 4096), default=20, metavar="MB",
                   help="largest upload in MiB (default 20)")
    p.add_argument("--concurrency", type=_bounded(int, 1, 64), default=2,
                   help="images worked on at once (default 2)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="export a model (ONNX) beside its checkpoint, or into --output")
    p.add_argument("run", type=Path, help="a run or model folder, or a shipped model's name")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="a folder to export into, with a copy of the model's config and weights "
                        "(needed for a shipped model)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="turn sample test images shipped with upright, correct them with the "
                       "model, write a before/after grid and the test metrics")
    p.add_argument("-o", "--output", type=Path, default=Path("upright-demo"))
    p.add_argument("--model", default="mnist", help="shipped model name or run folder")
    p.add_argument("--count", type=_bounded(int, 1, 500), default=64,
                   help="sample images to turn and correct (shipped in the package; default 64)")
    p.add_argument("--samples-only", action="store_true",
                   help="skip the full test protocol (which needs the dataset)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("quickstart", help="get MNIST, train the published recipe briefly, "
                       "evaluate it and correct sample test images")
    p.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS)
    p.add_argument("--max-time", type=parse_duration, default=300.0,
                   help="training time limit (default 5m)")
    p.add_argument("--max-steps", type=positive_int, default=None,
                   help="also stop after this many training steps (a budget a busy machine cannot shrink)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_quickstart)
    return parser


# What the system said, in the words of a tool that wanted a folder or a file there.
_OS_ERROR_WORDS = {errno.EEXIST: "already exists",
                   errno.ENOTDIR: "a file is in the way (a folder is needed there)",
                   errno.EISDIR: "a folder, not a file",
                   errno.ENOENT: "no such file or folder",
                   errno.EACCES: "permission denied",
                   errno.ENOSPC: "no space left on the device",
                   errno.EROFS: "a read-only file system"}


def os_error_line(exc: OSError) -> str:
    """``PATH: what is wrong`` for an error the system raised ("[Errno 20] Not a
    directory: 'x/y'" names neither the path first nor what to do). Words upright gave
    the error itself (fileio's "exists (use --overwrite to replace it)") are kept."""
    if exc.filename is None:
        return exc.strerror or str(exc)
    own_words = exc.strerror and exc.errno is not None and exc.strerror != os.strerror(exc.errno)
    words = exc.strerror if own_words else _OS_ERROR_WORDS.get(exc.errno, (exc.strerror or str(exc)).lower())
    path = Path(os.fsdecode(exc.filename))
    if exc.errno == errno.ENOTDIR:  # the file in the way may be a parent of the path named
        path = next((p for p in (path, *path.parents) if p.is_file()), path)
    elif exc.errno == errno.EEXIST and path.is_file() and not own_words:  # mkdir where a file is
        words = "a file is in the way (a folder is needed there)"
    return f"{path}: {words}"


def main(argv: list[str] | None = None) -> int:
    from upright.errors import UserError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    # What the user gave (UserError: flags, files, folders, models, datasets) or the system
    # refused (OSError: a missing or unreadable path) is one line; a bug keeps its traceback.
    except (UserError, OSError) as exc:
        from upright.names import shown

        print(f"upright: error: {shown(os_error_line(exc) if isinstance(exc, OSError) else str(exc))}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("upright: interrupted", file=sys.stderr)
        return 130
    finally:
        if "torch.distributed" in sys.modules:  # nothing to leave where torch never loaded
            from upright.distributed import shut_down

            shut_down()


if __name__ == "__main__":
    sys.exit(main())
