"""Overload: what a full process refuses, how fast, and what it still answers."""

from __future__ import annotations

import asyncio
import time

import grpc
import psycopg2
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from magpie.runtime.settings import Settings
from magpie.v1 import feedback_pb2_grpc, profiles_pb2_grpc
from magpie.v1 import profiles_pb2 as pb
from services.feedback.server import build_spec as feedback_spec
from services.profiles import config as profiles_config
from services.profiles.server import build_spec as profiles_spec
from tests.support import code_of

pytestmark = pytest.mark.integration


async def test_a_full_process_refuses_at_once_and_still_answers_probes(
    settings: Settings, clean_db: str, serve
) -> None:  # type: ignore[no-untyped-def]
    limited = settings.model_copy(update={"max_in_flight": 2})
    running = await serve(profiles_spec(limited), limited)
    blocker = psycopg2.connect(clean_db)
    try:
        with blocker.cursor() as cur:  # GetProfile waits on this lock: the slots stay taken
            cur.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        async with grpc.aio.insecure_channel(running.address) as channel:
            stub = profiles_pb2_grpc.ProfileServiceStub(channel)
            held = [
                asyncio.ensure_future(stub.GetProfile(pb.GetProfileRequest(user_id=u), timeout=5))
                for u in ("u1", "u2")
            ]
            await asyncio.sleep(0.3)
            started = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetProfile(pb.GetProfileRequest(user_id="u3"), timeout=5)
            refused_after = time.perf_counter() - started
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
            blocker.rollback()
            held_codes = [await code_of(call) for call in held]
            after = await code_of(stub.GetProfile(pb.GetProfileRequest(user_id="u3"), timeout=5))
    finally:
        blocker.close()

    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused_after < 0.05
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert grpc.StatusCode.RESOURCE_EXHAUSTED not in held_codes
    assert after is grpc.StatusCode.OK  # admitted again, answered


async def test_a_request_larger_than_the_service_needs_is_refused_unparsed(
    settings: Settings, serve
) -> None:  # type: ignore[no-untyped-def]
    running = await serve(profiles_spec(settings), settings)
    too_big = pb.BatchGetProfilesRequest(
        user_ids=["x" * 1024] * (profiles_config.MAX_REQUEST_BYTES // 1024 + 1)
    )

    async with grpc.aio.insecure_channel(
        running.address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        code = await code_of(
            profiles_pb2_grpc.ProfileServiceStub(channel).BatchGetProfiles(too_big)
        )

    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_silent_stream_is_ended(settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    impatient = settings.model_copy(update={"stream_idle_seconds": 0.5})
    running = await serve(feedback_spec(impatient), impatient)

    async with grpc.aio.insecure_channel(running.address) as channel:
        call = feedback_pb2_grpc.FeedbackServiceStub(channel).StreamEvents()
        started = time.perf_counter()
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await call.read()  # the client never writes
        took = time.perf_counter() - started

    assert ended.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.4 < took < 3.0
