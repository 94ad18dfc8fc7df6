"""Shared helper for benchmark results: machine description, the command, JSON output.

Every benchmark writes ``bench-results/NAME.json`` with at least ``command`` and
``machine`` beside its own numbers.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

from services.common.machine import machine_info

__all__ = ["RESULTS_DIR", "command_line", "write_report"]

RESULTS_DIR = Path(__file__).resolve().parents[2] / "bench-results"


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
