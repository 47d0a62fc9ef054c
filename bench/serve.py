"""Benchmark: `upright serve` under load - requests/s and latency of POST /v1/angle.

Starts `upright serve` in a child process on a free localhost port, posts 1024x768 JPEG
photos-like images at concurrency 1, 4 and 16 (each level bounded in count and time), and
reads the server's peak RSS from /proc. Prints one JSON line.

    python bench/serve.py [--requests 200] [--seconds 30] [--model mnist]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

LEVELS = (1, 4, 16)


def _jpegs(count: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        base = rng.integers(0, 255, (96, 128, 3), np.uint8)
        image = Image.fromarray(base).resize((1024, 768), Image.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def _post(url: str, data: bytes) -> float:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
    return time.perf_counter() - started


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _level(url: str, payloads: list[bytes], level: int, count: int, seconds: float) -> dict:
    """``count`` requests (fewer if ``seconds`` run out) from ``level`` clients at once."""
    deadline = time.perf_counter() + seconds

    def one(i: int) -> float | None:
        return _post(url, payloads[i % len(payloads)]) if time.perf_counter() < deadline else None

    started = time.perf_counter()
    with ThreadPoolExecutor(level) as pool:
        latencies = [t for t in pool.map(one, range(count)) if t is not None]
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "requests_per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="at most this many per level")
    parser.add_argument("--seconds", type=float, default=30.0, help="at most this long per level")
    parser.add_argument("--model", default="mnist")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    child = subprocess.Popen([sys.executable, "-m", "upright", "serve", "--port", str(port), "--model",
                              args.model], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.2)
        payloads = _jpegs(16)
        url = f"{base}/v1/angle"
        _post(url, payloads[0])  # loads the model
        results = {}
        for level in LEVELS:
            results[f"concurrency_{level}"] = _level(url, payloads, level, args.requests, args.seconds)
        results["server_peak_rss_mb"] = round(_peak_rss_mb(child.pid), 1)
    finally:
        child.terminate()
        child.wait(10)
    print(json.dumps({"benchmark": "serve", "image": "1024x768 JPEG", "model": args.model, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
