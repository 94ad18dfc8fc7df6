"""Shared helper for benchmark results: machine description, the command, JSON output.

Every benchmark writes ``bench-results/NAME.json`` with at least ``command`` and
``machine`` beside its own numbers.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

__all__ = ["RESULTS_DIR", "command_line", "machine_info", "write_report"]

RESULTS_DIR = Path(__file__).resolve().parents[2] / "bench-results"


def machine_info() -> dict[str, Any]:
    """Cores, date (UTC), CPU model and Python version of the machine running the benchmark."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "cpu": cpu,
        "python": platform.python_version(),
    }


def command_line() -> str:
    """The command that is running, as one shell-quoted line."""
    return shlex.join([Path(sys.executable).name, *sys.argv])


def write_report(name: str, results: dict[str, Any], path: Path | None = None) -> Path:
    """Write ``results`` plus ``command`` and ``machine`` to ``path`` or bench-results/NAME.json."""
    target = path or RESULTS_DIR / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        **results,
        "command": results.get("command", command_line()),
        "machine": machine_info(),
    }
    target.write_text(json.dumps(payload, indent=2) + "\n")
    return target
