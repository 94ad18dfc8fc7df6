"""The shared runtime, exercised through the real profile service."""

import asyncio
import signal
import time
from pathlib import Path

import grpc
import psycopg2
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from magpie.runtime.clients import open_channel
from magpie.runtime.deadline import set_deadline_from
from magpie.runtime.settings import Settings
from magpie.v1 import profiles_pb2 as pb
from magpie.v1 import profiles_pb2_grpc
from services.profiles.server import build_spec
from tests.support import field_violations, service_process

pytestmark = pytest.mark.integration


async def test_malformed_request_names_the_field(settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    running = await serve(build_spec(settings), settings)
    request = pb.UpsertProfilesRequest(
        profiles=[pb.ProfileUpsert(user_id="ok"), pb.ProfileUpsert(user_id="")]
    )

    async with grpc.aio.insecure_channel(running.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await profiles_pb2_grpc.ProfileServiceStub(channel).UpsertProfiles(request)

    assert field_violations(raised.value) == ["profiles[1].user_id"]


async def test_health_and_reflection(settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    running = await serve(build_spec(settings), settings)

    async with grpc.aio.insecure_channel(running.address) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="magpie.v1.ProfileService")
        )
        call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        listing = await call.read()
        await call.done_writing()

    assert health.status == health_pb2.HealthCheckResponse.SERVING
    names = {s.name for s in listing.list_services_response.service}
    assert {"magpie.v1.ProfileService", "grpc.health.v1.Health"} <= names


async def test_downstream_call_inherits_the_incoming_deadline(
    settings: Settings, serve, clean_db: str
) -> None:  # type: ignore[no-untyped-def]
    running = await serve(build_spec(settings), settings)
    blocker = psycopg2.connect(clean_db)
    try:
        with blocker.cursor() as cur:  # make GetProfile wait on a lock
            cur.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        async with open_channel(running.address, settings) as channel:
            stub = profiles_pb2_grpc.ProfileServiceStub(channel)
            set_deadline_from(0.3)  # as if serving a call with 300 ms left
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.GetProfile(pb.GetProfileRequest(user_id="u1"))
            elapsed = loop.time() - started
    finally:
        blocker.rollback()
        blocker.close()

    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < settings.default_deadline_seconds / 2


def test_sigterm_lets_the_in_flight_call_finish(
    settings: Settings, clean_db: str, tmp_path: Path
) -> None:
    with service_process("profiles", settings, tmp_path) as service:
        channel = grpc.insecure_channel(service.address)
        stub = profiles_pb2_grpc.ProfileServiceStub(channel)
        stub.UpsertProfiles(
            pb.UpsertProfilesRequest(profiles=[pb.ProfileUpsert(user_id="u1")]), timeout=5
        )
        blocker = psycopg2.connect(clean_db)
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        in_flight = stub.GetProfile.future(pb.GetProfileRequest(user_id="u1"), timeout=20)
        _wait_until_blocked_on_lock(clean_db)

        service.process.send_signal(signal.SIGTERM)
        _wait_for_log(service, "draining")
        blocker.rollback()  # releases the lock: the in-flight call can now finish
        blocker.close()

        reply = in_flight.result(timeout=10)
        exit_code = service.process.wait(timeout=10)
        channel.close()

    assert reply.profile.user_id == "u1"
    assert reply.profile.known
    assert exit_code == 0


def _wait_until_blocked_on_lock(url: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        for _ in range(100):
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
                if cur.fetchone()[0] > 0:
                    return
            time.sleep(0.05)
    finally:
        conn.close()
    raise AssertionError("the call never reached the database")


def _wait_for_log(service, text: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(100):
        if text in service.output():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never logged:\n{service.output()}")
