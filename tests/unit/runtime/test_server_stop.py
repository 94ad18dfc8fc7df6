"""Stopping a server never waits forever on a gRPC shutdown that does not complete."""

from __future__ import annotations

import asyncio
import time

from grpc_health.v1 import health

from magpie.runtime import server as server_module
from magpie.runtime.server import RunningServer, ServiceSpec


class _StuckServer:
    """A grpc.aio.Server whose stop never returns (seen once in CI with grpc.aio)."""

    def __init__(self) -> None:
        self.stop_called = asyncio.Event()
        self.release = asyncio.Event()

    async def stop(self, grace: float | None) -> None:
        self.stop_called.set()
        await self.release.wait()


async def test_a_stuck_grpc_shutdown_still_releases_the_service(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(server_module, "_STOP_MARGIN_SECONDS", 0.2)
    closed = asyncio.Event()

    async def close() -> None:
        closed.set()

    spec = ServiceSpec(name="profiles", service_names=[], register=lambda _: None, close=close)
    stuck = _StuckServer()
    running = RunningServer(
        spec,
        stuck,  # type: ignore[arg-type]
        0,
        health.aio.HealthServicer(),
        probe_seconds=60.0,
        probe_timeout=1.0,
    )
    started = time.monotonic()
    await asyncio.wait_for(running.stop(0.1), timeout=5)
    elapsed = time.monotonic() - started
    stuck.release.set()  # lets the abandoned stop task end before the loop closes
    await asyncio.sleep(0)
    assert stuck.stop_called.is_set()
    assert closed.is_set()
    assert elapsed < 2.0
