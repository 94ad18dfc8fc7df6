"""One request, one trace: Recommend through every service, PostgreSQL, Redis and Triton's own
spans, in the trace receiver (a real OTLP endpoint) the platform exports to; log lines
carry the same trace id; nothing personal or secret lands in a log or a span."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from magpie.platform.traces import ReceivedSpan, format_tree, trace_of
from magpie.runtime.telemetry import hashed_user
from magpie.v1 import ranking_pb2, ranking_pb2_grpc
from tests.integration.e2e.conftest import DATABASE_PASSWORD, Platform

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EXPORT_SECONDS = 30.0
"""Longest wait for batched spans (OTEL_BSP_SCHEDULE_DELAY is 200 ms here; tritonserver
batches on its own schedule, and once on a busy host its span missed a 15 s wait)."""


def _spans_until(
    platform: Platform, wanted: str, done: Callable[[list[ReceivedSpan]], bool]
) -> list[ReceivedSpan]:
    give_up = time.monotonic() + EXPORT_SECONDS
    while True:
        found = trace_of(platform.traces.spans, wanted)
        if done(found) or time.monotonic() > give_up:
            return found
        time.sleep(0.2)


def _services(spans: list[ReceivedSpan]) -> set[str]:
    return {span.service for span in spans}


def _recommend(
    platform: Platform, user_id: str, **options: object
) -> ranking_pb2.RecommendResponse:
    with grpc.insecure_channel(platform.settings.ranking_addr) as channel:
        stub = ranking_pb2_grpc.RankingServiceStub(channel)
        return stub.Recommend(
            ranking_pb2.RecommendRequest(user_id=user_id, k=5), timeout=5, **options
        )


def _rank(platform: Platform, user_id: str, product_ids: list[str]) -> ranking_pb2.RankResponse:
    with grpc.insecure_channel(platform.settings.ranking_addr) as channel:
        stub = ranking_pb2_grpc.RankingServiceStub(channel)
        return stub.Rank(ranking_pb2.RankRequest(user_id=user_id, product_ids=product_ids))


EVERY_PART = {"ranking", "profiles", "retrieval", "triton"}
"""The services every Recommend reaches. The catalog is called only for product facts
ranking has not kept (its cache, which earlier tests filled); Rank always calls it."""


def test_one_recommend_is_one_trace_through_every_service_and_store(platform: Platform) -> None:
    """...and the catalog hop, in the trace of a Rank of the same products."""
    user = platform.world.loaded.users[-1].user_id  # never asked for before: caches miss

    reply = _recommend(platform, user)
    spans = _spans_until(
        platform,
        reply.recommendation_id,
        lambda s: (
            _services(s) >= EVERY_PART
            and any(x.attributes.get("db.system") == "postgresql" for x in s)
            and any(x.attributes.get("db.system") == "redis" for x in s)
        ),
    )

    tree = format_tree(spans)
    assert _services(spans) >= EVERY_PART, tree
    assert len({span.trace_id for span in spans}) == 1  # ONE trace
    roots = [span for span in spans if not span.parent_span_id]
    assert [r.name for r in roots] == ["/magpie.v1.RankingService/Recommend"], tree
    root = roots[0]
    assert root.attributes["magpie.recommendation.id"] == reply.recommendation_id
    assert root.attributes["magpie.user.hash"] == hashed_user(user)
    assert root.attributes["magpie.model.version"] == reply.model_version
    assert root.attributes["magpie.recommend.k"] == 5
    ids = {span.span_id for span in spans}
    assert all(span.parent_span_id in ids for span in spans if span is not root), tree
    by_id = {span.span_id: span for span in spans}
    for service in ("profiles", "retrieval"):
        server = next(s for s in spans if s.service == service and s.kind == "server")
        assert by_id[server.parent_span_id].kind == "client"  # called by a client span
    triton = [s for s in spans if s.service == "triton"]
    infer = next(s for s in spans if s.name.startswith("triton infer"))
    assert infer.service == "ranking" and infer.attributes["magpie.candidates"] > 0
    assert any(s.parent_span_id == infer.span_id for s in triton), tree  # Triton joined it
    sources = [k for k in root.attributes if k.startswith("magpie.candidates.")]
    assert sources, root.attributes
    log = (platform.local.layout.log_dir / "ranking.log").read_text().splitlines()
    request_lines = [line for line in log if reply.recommendation_id in line]
    assert request_lines and all(f"trace_id={root.trace_id}" in line for line in request_lines)

    ranked = _rank(platform, user, [item.product_id for item in reply.items])
    rank_spans = _spans_until(
        platform, ranked.recommendation_id, lambda s: "catalog" in _services(s)
    )
    assert len({span.trace_id for span in rank_spans}) == 1, format_tree(rank_spans)
    by_id = {span.span_id: span for span in rank_spans}
    catalog = next(s for s in rank_spans if s.service == "catalog" and s.kind == "server")
    assert by_id[catalog.parent_span_id].kind == "client"
    assert by_id[catalog.parent_span_id].service == "ranking"


async def test_a_cancelled_call_still_ends_its_span(platform: Platform) -> None:
    """opentelemetry-python-contrib #3271: a cancelled grpc.aio call must not leak its span."""
    trace_id = secrets.token_hex(16)
    metadata = (("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"),)
    async with grpc.aio.insecure_channel(platform.settings.ranking_addr) as channel:
        stub = ranking_pb2_grpc.RankingServiceStub(channel)
        call = stub.Recommend(
            ranking_pb2.RecommendRequest(user_id="u000007", k=5), metadata=metadata, timeout=5
        )
        await asyncio.sleep(0.005)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    spans = await asyncio.to_thread(
        _spans_until,
        platform,
        trace_id,
        lambda s: any(x.name == "/magpie.v1.RankingService/Recommend" for x in s),
    )

    server = [s for s in spans if s.name == "/magpie.v1.RankingService/Recommend"]
    assert len(server) == 1 and server[0].end_ns >= server[0].start_ns > 0


def test_no_raw_user_id_nor_password_in_any_log_line_or_span(
    platform: Platform, tmp_path: Path
) -> None:
    user = f"private-user-{secrets.token_hex(4)}"
    reply = _recommend(platform, user)
    spans = _spans_until(platform, reply.recommendation_id, lambda s: "profiles" in _services(s))
    everything = "\n".join(span.to_json() for span in platform.traces.spans)
    logs = "\n".join(
        path.read_text(errors="replace") for path in platform.local.layout.log_dir.glob("*.log")
    )

    assert spans
    assert hashed_user(user) in everything
    for secret in (user, DATABASE_PASSWORD):
        assert secret not in everything
        assert secret not in logs
    assert json.dumps(DATABASE_PASSWORD)[1:-1] not in everything
