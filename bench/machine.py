"""What the benches share: the machine they ran on (speed figures are only comparable on
the same processor), and one measurement run in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def cpu_name() -> str:
    """The processor's model name (Linux /proc/cpuinfo), or "unknown"."""
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                        "unknown")
    except OSError:
        return "unknown"


def run_json(command: list[str], what: str, **env: str) -> dict:
    """Run ``command`` (the current Python prepended) with ``env`` added, and return the
    JSON object its last output line holds; a failure ends the bench naming ``what``."""
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", **env})
    if done.returncode:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
