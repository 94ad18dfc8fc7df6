"""Shared by the benchmarks that run the whole platform: bring it up with a trained model
in front of the load, and read what its processes use from /proc.

The platform is `LocalPlatform` on free ports, over a throwaway PostgreSQL database,
with a world loaded through the public APIs and a model trained, published and promoted
(as `magpie up` does); everything stops and the database is dropped when the block ends.
Imports of the platform are deferred to the call, so that a load generator that imports a
benchmark module does not load training code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from magpie.datasets.schema import Dataset
    from magpie.platform.local import LocalPlatform
    from magpie.platform.traces import TraceTargets
    from magpie.runtime.settings import Settings

__all__ = [
    "ADMIN_URL",
    "TrainedPlatform",
    "cpu_seconds",
    "otlp_receiver",
    "rss_mb",
    "stat_fields",
    "trained_platform",
    "with_descendants",
]

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
"""The machine's PostgreSQL, through which each run creates (and drops) its database."""


@dataclasses.dataclass(frozen=True)
class TrainedPlatform:
    local: LocalPlatform
    settings: Settings
    """The settings of a client of this platform (its addresses, database, artifacts)."""
    version: int
    """The model version retrieval and ranking both serve."""


@contextlib.contextmanager
def trained_platform(
    state: Path,
    world: Dataset,
    *,
    settings: Mapping[str, str],
    redis_url: str | None = None,
    tracing: TraceTargets | None = None,
    workers: bool = False,
) -> Iterator[TrainedPlatform]:
    """The five services and Triton (and, with ``workers``, the retraining worker and beat)
    with extra MAGPIE_* ``settings``, state in ``state``, ``world`` loaded and a first model
    served; ``redis_url`` defaults to the machine's Redis."""
    from magpie.platform.demo import DEMO_PIPELINE, bootstrap, settings_for_cli, wait_for_version
    from magpie.platform.local import SERVICES, LocalPlatform, isolated_layout
    from magpie.runtime import schema

    # created and migrated by LocalPlatform.up, as `magpie up` does
    with schema.throwaway_database(ADMIN_URL, "magpie_bench", migrate=False) as database_url:
        local = LocalPlatform(
            isolated_layout(state),
            database_url=database_url,
            redis_url=redis_url,
            settings=settings,
            tracing=tracing,
        )
        try:
            local.up(list(SERVICES), workers=workers)
            client = settings_for_cli(local.service_settings())
            version = bootstrap(client, world, DEMO_PIPELINE, progress=False)
            wait_for_version(client, version, timeout=60)
            yield TrainedPlatform(local, client, version)
        finally:
            local.down()


@contextlib.contextmanager
def otlp_receiver(out: Path) -> Iterator[TraceTargets]:
    """The OTLP receiver as its own process (``python -m magpie.platform.traces``), as a
    collector would be: in a benchmark's process its parsing would hold the GIL against the
    load generator and inflate the traced latencies. Spans go to ``out`` (JSON lines)."""
    from magpie.platform.local import free_port
    from magpie.platform.traces import TraceTargets

    grpc_port, http_port = free_port(), free_port()
    command = [sys.executable, "-m", "magpie.platform.traces", "--out", str(out)]
    command += ["--grpc-port", str(grpc_port), "--http-port", str(http_port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        process.stdout.readline()  # "OTLP on grpc ..., http ...": listening
        yield TraceTargets(
            f"http://127.0.0.1:{grpc_port}",
            f"http://127.0.0.1:{http_port}/v1/traces",
            schedule_delay_ms=None,  # the SDK's batching, as in production
        )
    finally:
        process.terminate()
        process.wait(timeout=20)


def stat_fields(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (field 3 onwards); OSError
    when the process is gone."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = stat_fields(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def with_descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Triton's Python-backend stubs, Celery's pool)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int(stat_fields(entry.name)[1])  # ppid (field 4)
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def rss_mb(pids: list[int]) -> float:
    """Resident memory of the processes together (VmRSS of /proc/PID/status), in MiB; a
    process that is gone counts 0."""
    total_kib = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])  # "VmRSS:   123456 kB"
                break
    return total_kib / 1024
