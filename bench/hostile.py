"""Benchmark: `upright correct` under hostile input (issue 17).

Builds a folder of hostile cases (each with one good image beside it), corrects each in a
child process, and checks the outcome: a row per file, no traceback, strict JSON, every
good image written. Then corrects a folder of big images and measures the child's peak RSS.
Prints one JSON line: cases tried, cases handled, peak RSS (MiB), outputs lost.

    python bench/hostile.py [--big 4] [--big-size 12000x12000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from upright.pngstream import write_png


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


def _ycck(path: Path) -> None:
    """Pillow writes CMYK only: give it YCC components and mark the file YCCK (Adobe transform 2)."""
    rgb = np.dstack([_digit()] * 3)
    ycc = np.asarray(Image.fromarray(255 - rgb).convert("YCbCr"))
    stored = np.dstack([255 - ycc, np.zeros(rgb.shape[:2], np.uint8)])
    buffer = io.BytesIO()
    Image.frombytes("CMYK", (28, 28), stored.tobytes()).save(buffer, format="JPEG", quality=100)
    data = bytearray(buffer.getvalue())
    data[data.find(b"Adobe") + 11] = 2
    path.write_bytes(bytes(data))


def _deep_oriented(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb16 = np.dstack([_digit()] * 3).astype(np.uint16) * 257
    with open(path, "wb") as f:
        write_png(f, (28, 28), [rgb16], {"exif": exif.tobytes(), "dpi": (300.0, 300.0)})


def _padded_jpeg(path: Path) -> None:
    Image.fromarray(_digit()).save(path)
    with open(path, "ab") as f:
        f.truncate(64 << 20)


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
    "ycck-jpeg": lambda d: _ycck(d / "ycck.jpg"),
    "lab-tiff": lambda d: Image.fromarray(_digit()).convert("RGB").convert("LAB").save(d / "lab.tiff"),
    "16-bit-colour-exif-orientation": lambda d: _deep_oriented(d / "deep.png"),
    "jpeg-then-64-mib": lambda d: _padded_jpeg(d / "padded.jpg"),
    "stale-temp-in-output": lambda d: None,  # the output folder's stale file: run_case makes it
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
    if name == "stale-temp-in-output":
        out.mkdir(parents=True)
        stale = out / ".upright-ab12cd34.tmp.png"
        stale.write_bytes(b"half an image a killed run left")
        os.utime(stale, (0, 0))
    done = _run([str(src), "--model", "mnist", "-o", str(out)])
    try:
        rows = json.loads((out / "angles.json").read_text(),
                          parse_constant=lambda t: (_ for _ in ()).throw(ValueError(t)))
    except (OSError, ValueError):
        return False, 1
    lost = 0 if (out / "good.png").is_file() else 1
    if any(p.name.startswith(".upright-") for p in out.iterdir()):
        return False, lost
    handled = (done.returncode in (0, 1) and "Traceback" not in done.stderr
               and len(done.stdout.strip().splitlines()) == 1 and lost == 0
               and all(r["action"] != "failed" or r["error"] for r in rows))
    return handled, lost


def big_folder_rss(root: Path, count: int, size: tuple[int, int]) -> float:
    """The issue's case: RGB PNGs that are small on disk (a flat picture deflates a
    thousandfold) and huge in memory (12000x12000x3 = 432 MB each)."""
    src = root / "big" / "in"
    src.mkdir(parents=True)
    w, h = size
    pixels = np.zeros((h, w, 3), np.uint8)
    pixels[h // 4: h * 3 // 4, w * 5 // 12: w * 7 // 12] = 200  # a bar and a crossbar
    pixels[h // 4: h // 3, w // 4: w * 3 // 4] = 120
    Image.fromarray(pixels).save(src / "big0.png", compress_level=9)
    del pixels
    for i in range(1, count):
        shutil.copyfile(src / "big0.png", src / f"big{i}.png")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = _run([str(src), "--model", "mnist", "-o", str(root / "big" / "out")])
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--big", type=int, default=4, help="big PNGs in the RSS folder")
    parser.add_argument("--big-size", default="12000x12000", help="WIDTHxHEIGHT of each")
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
        "big_folder": f"{args.big} RGB PNGs of {size[0]}x{size[1]}, default --memory-budget",
        "outputs_lost": sum(lost for _, lost in results.values()),
    }))


if __name__ == "__main__":
    main()
