"""Benchmark: `upright correct` under hostile input (issue 17).

Builds a folder of hostile cases (each with one good image beside it), corrects each in a
child process, and checks the outcome: a row per file, no traceback, strict JSON, every
good image written. Then corrects a folder of big images and measures the child's peak RSS.
Prints one JSON line: cases tried, cases handled, peak RSS (MiB), outputs lost.

    python bench/hostile.py [--big 6] [--big-size 6000x4000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _png_header(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header claims a huge image (no real pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _digit() -> np.ndarray:
    image = np.zeros((28, 28), np.uint8)
    image[4:14, 12:16] = 255
    image[14:20, 7:21] = 180
    return image


def _frames(path: Path) -> None:
    frames = [Image.fromarray(_digit()), Image.fromarray(_digit()[::-1])]
    frames[0].save(path, save_all=True, append_images=frames[1:])


CASES = {  # name -> writes the hostile file(s) into a folder
    "wide-40000x40": lambda d: Image.fromarray(np.zeros((40, 40_000), np.uint8)).save(d / "wide.png"),
    "bomb-header": lambda d: _png_header(d / "bomb.png", 100_000, 100_000),
    "truncated": lambda d: (d / "cut.png").write_bytes((d / "good.png").read_bytes()[:60]),
    "empty": lambda d: (d / "empty.jpg").write_bytes(b""),
    "not-an-image": lambda d: (d / "text.png").write_text("hello"),
    "non-utf8-name": lambda d: Image.fromarray(_digit()).save(d / os.fsdecode(b"caf\xe9.png")),
    "formula-name": lambda d: Image.fromarray(_digit()).save(d / "=1+2.png"),
    "newline-name": lambda d: Image.fromarray(_digit()).save(d / "a\nb.png", format="PNG"),
    "255-byte-name": lambda d: Image.fromarray(_digit()).save(d / ("x" * 251 + ".png")),
    "multi-page-tiff": lambda d: _frames(d / "pages.tiff"),
    "animated-gif": lambda d: _frames(d / "moving.gif"),
    "cmyk-jpeg": lambda d: Image.fromarray(_digit()).convert("CMYK").save(d / "cmyk.jpg"),
    "dangling-link": lambda d: os.symlink(d / "gone.png", d / "dangling.png"),
    "folder-link": lambda d: os.symlink(d, d / "loop"),
}


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.run([sys.executable, "-m", "upright", "correct", *args, "--no-progress"],
                          capture_output=True, text=True, env=env)


def run_case(name: str, root: Path) -> tuple[bool, int]:
    """(handled, outputs lost) for one case."""
    src, out = root / name / "in", root / name / "out"
    src.mkdir(parents=True)
    Image.fromarray(_digit()).save(src / "good.png")
    CASES[name](src)
    done = _run([str(src), "--model", "mnist", "-o", str(out)])
    try:
        rows = json.loads((out / "angles.json").read_text(),
                          parse_constant=lambda t: (_ for _ in ()).throw(ValueError(t)))
    except (OSError, ValueError):
        return False, 1
    lost = 0 if (out / "good.png").is_file() else 1
    handled = (done.returncode in (0, 1) and "Traceback" not in done.stderr
               and len(done.stdout.strip().splitlines()) == 1 and lost == 0
               and all(r["action"] != "failed" or r["error"] for r in rows))
    return handled, lost


def big_folder_rss(root: Path, count: int, size: tuple[int, int]) -> float:
    src = root / "big" / "in"
    src.mkdir(parents=True)
    w, h = size
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 255, (h // 8, w // 8, 3), np.uint8)
    for i in range(count):
        Image.fromarray(np.tile(tile, (8, 8, 1))).save(src / f"big{i}.jpg", quality=85)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = _run([str(src), "--model", "mnist", "-o", str(root / "big" / "out")])
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--big", type=int, default=6, help="big images in the RSS folder")
    parser.add_argument("--big-size", default="6000x4000", help="WIDTHxHEIGHT of each")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.big_size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results = {name: run_case(name, root) for name in CASES}
        rss = big_folder_rss(root, args.big, size)
    print(json.dumps({
        "cases_tried": len(results),
        "cases_handled": sum(h for h, _ in results.values()),
        "not_handled": [n for n, (h, _) in results.items() if not h],
        "peak_rss_mib_big_folder": round(rss, 1),
        "big_folder": f"{args.big} JPEGs of {size[0]}x{size[1]}",
        "outputs_lost": sum(lost for _, lost in results.values()),
    }))


if __name__ == "__main__":
    main()
