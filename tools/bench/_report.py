"""Shared helpers for benchmark results: latency percentiles, machine description, the
command, JSON output.

Every benchmark writes ``bench-results/NAME.json`` with at least ``command`` and
``machine`` beside its own numbers. Imports only the standard library, numpy and
``magpie.runtime.machine``: the GPU benchmarks run it on a machine with little else.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from magpie.runtime.machine import machine_info

__all__ = ["RESULTS_DIR", "command_line", "percentiles", "write_report"]

RESULTS_DIR = Path(__file__).resolve().parents[2] / "bench-results"


def percentiles(samples: ArrayLike, qs: Iterable[float] = (50, 95, 99)) -> dict[str, float]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` of ``samples`` (numpy's default linear
    interpolation, unrounded, in the samples' unit); NaN for each when there are none."""
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        return {f"p{q:g}": float("nan") for q in qs}
    return {f"p{q:g}": float(np.percentile(values, q)) for q in qs}


def command_line() -> str:
    """The command that is running, as one shell-quoted line (``python -m MODULE ...`` when
    it was started with ``-m``)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    argv = ["-m", spec.name, *sys.argv[1:]] if spec is not None and spec.name else sys.argv
    return shlex.join([Path(sys.executable).name, *argv])


def write_report(name: str, results: dict[str, Any], path: Path | None = None) -> Path:
    """Write ``results`` plus ``command`` and ``machine`` to ``path`` or bench-results/NAME.json
    (``results``' own ``command`` and ``machine`` stay: a report updated in part keeps
    those of the run that made the rest)."""
    target = path or RESULTS_DIR / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        **results,
        "command": results.get("command", command_line()),
        "machine": results.get("machine", machine_info()),
    }
    target.write_text(json.dumps(payload, indent=2) + "\n")
    return target
