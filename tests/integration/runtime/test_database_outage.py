"""A stopped database yields UNAVAILABLE; the service recovers when it returns.

Runs against a disposable embedded PostgreSQL (pgserver) that the test can stop
and start, so the machine's shared server is never touched.
"""

import asyncio
import itertools
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg2
import psycopg2.extensions
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pgserver._commands import POSTGRES_BIN_PATH
from pgserver.postgres_server import PostgresServer, get_server

from magpie.runtime import schema
from magpie.runtime.settings import Settings
from magpie.v1 import profiles_pb2 as pb
from magpie.v1 import profiles_pb2_grpc
from services.profiles.server import build_spec

pytestmark = pytest.mark.integration


@pytest.fixture
def disposable_postgres() -> Iterator[PostgresServer]:
    # Not under tmp_path: the cluster's owner (pgserver, when run as root) must reach its
    # data directory, and each pytest run makes /tmp/pytest-of-<user> private again.
    with tempfile.TemporaryDirectory(prefix="magpie-pg-") as parent:
        server = get_server(Path(parent) / "pgdata", cleanup_mode="delete")
        try:
            yield server
        finally:
            server.cleanup()


def _pg_ctl(server: PostgresServer, *args: str) -> None:
    """pg_ctl as the cluster's owner. Not pgserver's ``subprocess.run(user=...)``: that
    forks rather than vforks, and a child forked from a process running gRPC has crashed
    before its exec (SIGSEGV)."""
    owner = ["runuser", "-u", server.system_user, "--"] if server.system_user else []
    command = [*owner, str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(server.pgdata), *args]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=30)


def _stop(server: PostgresServer) -> None:
    _pg_ctl(server, "-w", "-m", "fast", "stop")


def _start(server: PostgresServer) -> None:
    """Starts it as pgserver does: no TCP, its socket where its URL says."""
    socket_dir = psycopg2.extensions.parse_dsn(server.get_uri())["host"]
    log = str(server.pgdata / "log")
    _pg_ctl(server, "-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", log, "start")


async def test_stopped_database_is_unavailable_then_recovers(
    disposable_postgres: PostgresServer, settings: Settings, serve
) -> None:  # type: ignore[no-untyped-def]
    url = disposable_postgres.get_uri("postgres")
    schema.upgrade(url)
    settings = settings.model_copy(update={"database_url": url, "db_retry_seconds": 0.5})
    running = await serve(build_spec(settings), settings)
    async with grpc.aio.insecure_channel(running.address) as channel:
        profiles = profiles_pb2_grpc.ProfileServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        await profiles.UpsertProfiles(
            pb.UpsertProfilesRequest(profiles=[pb.ProfileUpsert(user_id="u1")])
        )

        _stop(disposable_postgres)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await profiles.GetProfile(pb.GetProfileRequest(user_id="u1"), timeout=5)
        await running.check_dependencies()
        down = await health.Check(health_pb2.HealthCheckRequest())

        _start(disposable_postgres)
        reply = await _eventually(lambda: profiles.GetProfile(pb.GetProfileRequest(user_id="u1")))
        await running.check_dependencies()
        up = await health.Check(health_pb2.HealthCheckRequest())

    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "Traceback" not in (raised.value.details() or "")
    assert down.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert reply.profile.known
    assert up.status == health_pb2.HealthCheckResponse.SERVING


async def test_calls_under_load_answer_in_time_through_a_restart(
    disposable_postgres: PostgresServer, settings: Settings, serve
) -> None:  # type: ignore[no-untyped-def]
    url = disposable_postgres.get_uri("postgres")
    schema.upgrade(url)
    settings = settings.model_copy(update={"database_url": url, "health_probe_seconds": 0.2})
    running = await serve(build_spec(settings), settings)
    acknowledged: list[str] = []
    outcomes: list[tuple[grpc.StatusCode, float, float]] = []  # code, start, end
    statuses: set[int] = set()
    done = asyncio.Event()
    async with grpc.aio.insecure_channel(running.address) as channel:
        profiles = profiles_pb2_grpc.ProfileServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)

        async def writer(n: int) -> None:
            for i in itertools.count():
                if done.is_set():
                    return
                user_id, started = f"load-{n}-{i}", time.monotonic()
                request = pb.UpsertProfilesRequest(profiles=[pb.ProfileUpsert(user_id=user_id)])
                try:
                    await profiles.UpsertProfiles(request, timeout=1)
                    code = grpc.StatusCode.OK
                    acknowledged.append(user_id)
                except grpc.aio.AioRpcError as error:
                    code = error.code()
                    await asyncio.sleep(0.05)
                outcomes.append((code, started, time.monotonic()))

        async def watch() -> None:
            while not done.is_set():
                statuses.add((await health.Check(health_pb2.HealthCheckRequest())).status)
                await asyncio.sleep(0.05)

        load = [asyncio.create_task(writer(n)) for n in range(4)]
        watcher = asyncio.create_task(watch())
        # pg_ctl runs on this thread (forked from another one it has crashed), blocking the
        # loop a moment: calls in flight then are not timed.
        await asyncio.sleep(0.5)
        stopping = time.monotonic()
        _stop(disposable_postgres)
        stopped = time.monotonic()
        await asyncio.sleep(1.0)
        starting = time.monotonic()
        _start(disposable_postgres)
        started = time.monotonic()
        before = len(acknowledged)
        await asyncio.sleep(1.5)
        done.set()
        await asyncio.gather(*load, watcher)
        after = (await health.Check(health_pb2.HealthCheckRequest())).status

    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT user_id FROM users WHERE user_id = ANY(%s)", (acknowledged,))
            stored = {user_id for (user_id,) in cur.fetchall()}
    finally:
        conn.close()
    codes = {code for code, _, _ in outcomes}
    timed = [
        end - start
        for _, start, end in outcomes
        if not (start < stopped and end > stopping) and not (start < started and end > starting)
    ]
    failed = sum(code is not grpc.StatusCode.OK for code, _, _ in outcomes)
    print(f"restart under load: {len(outcomes)} calls, {failed} failed, slowest {max(timed):.2f}s")
    assert codes <= {
        grpc.StatusCode.OK,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
    assert grpc.StatusCode.UNAVAILABLE in codes or grpc.StatusCode.DEADLINE_EXCEEDED in codes
    assert max(timed) < 1.5
    assert len(acknowledged) > before  # writes succeed again after the restart
    assert stored == set(acknowledged)
    assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses
    assert after == health_pb2.HealthCheckResponse.SERVING


async def _eventually(call, attempts: int = 40):  # type: ignore[no-untyped-def]
    for _ in range(attempts - 1):
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.UNAVAILABLE:
                raise
            await asyncio.sleep(0.25)
    return await call()
