"""A hung or slow PostgreSQL must not wedge a service (the profile service stands in for all).

Hangs are made for real: a lock held by another session on the rows the service writes,
and the service's own backends paused with SIGSTOP (found in ``pg_stat_activity`` by
their ``application_name``; only this test database's backends are touched, and they
are always resumed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg2
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from magpie.runtime.settings import Settings
from magpie.v1 import profiles_pb2 as pb
from magpie.v1 import profiles_pb2_grpc
from services.profiles.server import build_spec
from tests.support import service_process

pytestmark = pytest.mark.integration

APPLICATION = "magpie-profiles"
FAILED_IN_TIME = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _upsert(user_id: str, region: str = "north") -> pb.UpsertProfilesRequest:
    return pb.UpsertProfilesRequest(
        profiles=[pb.ProfileUpsert(user_id=user_id, attributes=pb.UserAttributes(region=region))]
    )


def _query(url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, args or None)
            return cur.fetchall()
    finally:
        conn.close()


def _service_backends(url: str, since: object = None) -> list[int]:
    """Pids of the profile service's sessions on the test database (started after `since`)."""
    rows = _query(
        url,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = %s AND (%s::timestamptz IS NULL OR backend_start > %s)",
        APPLICATION,
        since,
        since,
    )
    return [int(pid) for (pid,) in rows]


def _waiting_on_locks(url: str) -> int:
    rows = _query(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = %s AND wait_event_type = 'Lock'",
        APPLICATION,
    )
    return int(rows[0][0])


@contextlib.contextmanager
def _locked(url: str, sql: str) -> Iterator[None]:
    """Holds the locks `sql` takes, in a transaction of another session, until the block ends."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
        yield
    finally:
        conn.rollback()
        conn.close()


@contextlib.contextmanager
def _paused(pids: list[int]) -> Iterator[None]:
    """SIGSTOPs the backends until the block ends (then SIGCONT, whatever happened)."""
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


async def _until(condition: Callable[[], Awaitable[bool]], seconds: float, what: str) -> float:
    """Polls `condition` every 20 ms; returns the seconds it took, fails after `seconds`."""
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not {what} within {seconds}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def _fails_within(call: Awaitable[object]) -> tuple[grpc.StatusCode, float]:
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value.code(), time.monotonic() - started


async def test_a_locked_row_fails_fast_and_the_retried_write_lands(
    settings: Settings, serve
) -> None:  # type: ignore[no-untyped-def]
    running = await serve(build_spec(settings), settings)
    async with grpc.aio.insecure_channel(running.address) as channel:
        profiles = profiles_pb2_grpc.ProfileServiceStub(channel)
        await profiles.UpsertProfiles(_upsert("u1", "north"))

        with _locked(settings.database_url, "SELECT * FROM users WHERE user_id = 'u1' FOR UPDATE"):
            code, took = await _fails_within(
                profiles.UpsertProfiles(_upsert("u1", "south"), timeout=5)
            )
        await profiles.UpsertProfiles(_upsert("u1", "south"), timeout=5)

    stored = _query(settings.database_url, "SELECT region FROM users WHERE user_id = 'u1'")
    # lock_timeout (1 s) ends the wait long before the caller's 5 s deadline
    assert code is grpc.StatusCode.UNAVAILABLE
    assert took < settings.db_lock_timeout_ms / 1000 + 1.0, took
    assert stored == [("south",)]


async def test_calls_that_gave_up_leave_no_work_behind(settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    # No lock timeout: only the callers' deadlines bound the waits.
    settings = settings.model_copy(update={"db_pool_size": 2, "db_lock_timeout_ms": 0})
    running = await serve(build_spec(settings), settings)
    url = settings.database_url
    async with grpc.aio.insecure_channel(running.address) as channel:
        profiles = profiles_pb2_grpc.ProfileServiceStub(channel)
        with _locked(url, "LOCK TABLE users IN EXCLUSIVE MODE"):
            outcomes = await asyncio.gather(
                *(
                    _fails_within(profiles.UpsertProfiles(_upsert(f"g{i}"), timeout=0.5))
                    for i in range(8)
                )
            )
            # each statement ended with its caller's deadline (SET LOCAL statement_timeout)
            await asyncio.sleep(0.3)
            still_waiting = _waiting_on_locks(url)
        await asyncio.sleep(0.5)  # what had queued behind the lock would run now
        reply = await profiles.GetProfile(pb.GetProfileRequest(user_id="g0"), timeout=2)

    stored = _query(url, "SELECT count(*) FROM users WHERE user_id LIKE 'g%'")
    assert {code for code, _ in outcomes} <= FAILED_IN_TIME
    assert max(took for _, took in outcomes) < 1.0
    assert still_waiting == 0
    assert stored == [(0,)]
    assert not reply.profile.known


async def test_paused_backends_turn_health_not_serving_until_resumed(
    settings: Settings, serve
) -> None:  # type: ignore[no-untyped-def]
    settings = settings.model_copy(
        update={"db_pool_size": 2, "health_probe_seconds": 0.3, "health_probe_timeout_seconds": 0.5}
    )
    running = await serve(build_spec(settings), settings)
    url = settings.database_url
    async with grpc.aio.insecure_channel(running.address) as channel:
        profiles = profiles_pb2_grpc.ProfileServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)

        async def status() -> int:
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            return int(reply.status)

        async def is_down() -> bool:
            return await status() == NOT_SERVING

        async def is_up() -> bool:
            return await status() == SERVING

        # Both connections opened: two writes wait on a lock at once.
        with _locked(url, "LOCK TABLE users IN EXCLUSIVE MODE"):
            writes = [
                asyncio.ensure_future(profiles.UpsertProfiles(_upsert(f"w{i}"), timeout=5))
                for i in range(2)
            ]

            async def both_waiting() -> bool:
                return _waiting_on_locks(url) == 2

            await _until(both_waiting, 3, "two sessions waiting")
        await asyncio.gather(*writes)
        await _until(is_up, 3, "SERVING")
        pids = _service_backends(url)
        assert len(pids) == 3, pids  # two for calls, one for the probe

        with _paused(pids):
            down_after = await _until(is_down, 5, "NOT_SERVING with the backends paused")
            during = [
                await _fails_within(profiles.UpsertProfiles(_upsert("lost"), timeout=1)),
                await _fails_within(
                    profiles.GetProfile(pb.GetProfileRequest(user_id="w0"), timeout=1)
                ),
            ]
        up_after = await _until(is_up, 5, "SERVING again after SIGCONT")
        await profiles.UpsertProfiles(_upsert("after"), timeout=5)

    stored = _query(url, "SELECT user_id FROM users WHERE user_id IN ('w0', 'w1', 'after')")
    print(f"paused: NOT_SERVING after {down_after:.2f}s, SERVING {up_after:.2f}s after SIGCONT")
    assert down_after < 3 * settings.health_probe_seconds + settings.health_probe_timeout_seconds
    assert {code for code, _ in during} <= FAILED_IN_TIME
    assert max(took for _, took in during) < 1.5
    assert sorted(stored) == [("after",), ("w0",), ("w1",)]


def test_sigterm_exits_promptly_with_its_backend_paused(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"db_pool_size": 1, "grace_seconds": 1.0})
    url = settings.database_url
    (since,) = _query(url, "SELECT now()")[0]
    with (
        service_process("profiles", settings, tmp_path) as service,
        grpc.insecure_channel(service.address) as channel,
    ):
        profiles_pb2_grpc.ProfileServiceStub(channel).UpsertProfiles(_upsert("u1"), timeout=5)
        pids = _service_backends(url, since)
        assert len(pids) == 2, pids  # one for calls, one for the probe
        with _paused(pids):
            stuck = profiles_pb2_grpc.ProfileServiceStub(channel).UpsertProfiles.future(
                _upsert("u2"), timeout=30
            )
            time.sleep(0.3)  # in flight, its one thread stuck on the paused backend
            started = time.monotonic()
            service.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.process.wait(timeout=settings.grace_seconds + 8)
            took = time.monotonic() - started
    print(f"SIGTERM with a paused backend: exited after {took:.2f}s")
    assert stuck.exception() is not None
    assert service.process.returncode == 0, service.output()
    assert took < settings.grace_seconds + 3, service.output()
