"""A stopped database yields UNAVAILABLE; the service recovers when it returns.

Runs against a disposable embedded PostgreSQL (pgserver) that the test can stop
and start, so the machine's shared server is never touched.
"""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pgserver._commands import pg_ctl
from pgserver.postgres_server import PostgresServer, get_server

from magpie.runtime import schema
from magpie.runtime.settings import Settings
from magpie.v1 import profiles_pb2 as pb
from magpie.v1 import profiles_pb2_grpc
from services.profiles.server import build_spec

pytestmark = pytest.mark.integration


@pytest.fixture
def disposable_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    server = get_server(tmp_path / "pgdata", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()


def _stop(server: PostgresServer) -> None:
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)


def _start(server: PostgresServer) -> None:
    server.ensure_postgres_running()


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


async def _eventually(call, attempts: int = 40):  # type: ignore[no-untyped-def]
    for _ in range(attempts - 1):
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.UNAVAILABLE:
                raise
            await asyncio.sleep(0.25)
    return await call()
