"""What the benches say about the machine they ran on (speed figures are only comparable on
the same processor)."""

from __future__ import annotations


def cpu_name() -> str:
    """The processor's model name (Linux /proc/cpuinfo), or "unknown"."""
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                        "unknown")
    except OSError:
        return "unknown"
