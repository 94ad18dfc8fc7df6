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


_SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
"""CPU flags that decide FP32 and INT8 kernel speed (INT8 gains most with VNNI)."""


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def machine_info() -> dict[str, Any]:
    """Cores, date (UTC), CPU model (name, family/model: "AMD EPYC" alone names several
    generations), SIMD flags and Python version of the machine running the benchmark."""
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    return {
        "cores": os.cpu_count(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "cpu": cpu.get("model name", platform.processor()),
        "cpu_family_model": f"{cpu.get('cpu family', '?')}/{cpu.get('model', '?')}",
        "simd": [flag for flag in _SIMD_FLAGS if flag in flags],
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
