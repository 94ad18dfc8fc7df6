"""What machine a measurement ran on, recorded beside every benchmark and evaluation.

"AMD EPYC" alone names several generations and hosts change between runs, so the CPU
family/model and the SIMD flags that decide FP32 and INT8 kernel speed are kept too.
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["machine_info", "package_version"]

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
    """Cores, date (UTC), CPU name and family/model, SIMD flags and Python version."""
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


def package_version() -> str:
    """The installed magpie distribution's version ("0+unknown" from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("magpie")
    except PackageNotFoundError:
        return "0+unknown"
