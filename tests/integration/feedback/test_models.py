"""ModelService in the feedback process, against the real registry in PostgreSQL and the
events the feedback service stored."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg2
import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from magpie.modelstore import registry
from magpie.runtime.db import Connection
from magpie.runtime.settings import Settings
from magpie.runtime.units import SECONDS_PER_DAY
from magpie.v1 import common_pb2, feedback_pb2, feedback_pb2_grpc, models_pb2, models_pb2_grpc
from services.feedback import config
from services.feedback.server import build_spec
from tests.integration.feedback.events import event
from tests.support import field_violations

pytestmark = pytest.mark.integration

IMPRESSION, CLICK, CART, PURCHASE, LIKE = (
    common_pb2.EVENT_TYPE_IMPRESSION,
    common_pb2.EVENT_TYPE_CLICK,
    common_pb2.EVENT_TYPE_ADD_TO_CART,
    common_pb2.EVENT_TYPE_PURCHASE,
    common_pb2.EVENT_TYPE_LIKE,
)
RUN_ID = str(uuid.UUID(int=7))
GATE_VERDICT: dict[str, Any] = {
    "accepted": False,
    "reason": "rejected: INT8 ranker p50 9.00 ms (budget 5 ms)",
    "checks": [
        {"check": "baselines", "passed": True, "reason": "NDCG@10 0.3100 >= 0.2000"},
        {"check": "latency", "passed": False, "reason": "INT8 ranker p50 9.00 ms (budget 5 ms)"},
    ],
    "metrics": {"candidate": {"NDCG@10": 0.31}, "ranker_p50_ms": 9.0},
}


@dataclass
class Stubs:
    models: models_pb2_grpc.ModelServiceStub
    feedback: feedback_pb2_grpc.FeedbackServiceStub
    channel: grpc.aio.Channel


@pytest.fixture
async def stubs(settings: Settings, catalog: dict[str, str], serve) -> AsyncIterator[Stubs]:  # type: ignore[no-untyped-def]
    running = await serve(build_spec(settings), settings)
    async with grpc.aio.insecure_channel(running.address) as channel:
        yield Stubs(
            models_pb2_grpc.ModelServiceStub(channel),
            feedback_pb2_grpc.FeedbackServiceStub(channel),
            channel,
        )


def _in_registry(database_url: str, fn: Callable[[Connection], Any]) -> None:
    conn = psycopg2.connect(database_url)
    try:
        with conn:
            fn(conn)
    finally:
        conn.close()


def _lifecycle(conn: Connection, name: str) -> None:
    """Versions 1-4 of ``name``: promoted twice, rolled back, one rejected by the gate (from
    a retraining run), one staged."""
    registry.register_candidate(conn, name, 1, {"ndcg@10": 0.1}, "/a/1")
    registry.register_candidate(
        conn, name, 2, {"candidate": {"NDCG@10": 0.3, "HR@10": 0.5}, "fp32": True}, "/a/2"
    )
    registry.reserve_version(conn, name, "/a/{version}", RUN_ID)
    registry.set_status(
        conn, name, 3, "rejected", metrics=GATE_VERDICT["metrics"], verdict=GATE_VERDICT
    )
    registry.register_candidate(conn, name, 4, {}, "/a/4")
    registry.promote(conn, name, 1, "cli")
    registry.promote(conn, name, 2, "schedule", reason="NDCG@10 up 4%")
    registry.rollback(conn, name, "manual", "clicks fell")
    registry.set_staged(conn, name, 4)


async def test_versions_their_aliases_verdicts_and_the_promotion_log(
    stubs: Stubs, settings: Settings
) -> None:
    _in_registry(settings.database_url, lambda c: _lifecycle(c, settings.model_name))

    reply = await stubs.models.ListModelVersions(models_pb2.ListModelVersionsRequest())
    short = await stubs.models.ListModelVersions(  # a deadline: SET LOCAL comes first
        models_pb2.ListModelVersionsRequest(limit=2), timeout=1.5
    )
    other = await stubs.models.ListModelVersions(
        models_pb2.ListModelVersionsRequest(model_name="other")
    )

    assert reply.model_name == settings.model_name
    versions = {v.version: v for v in reply.versions}
    assert [v.version for v in reply.versions] == [4, 3, 2, 1]
    assert [(v.status, list(v.aliases)) for v in reply.versions] == [
        ("candidate", ["staged"]),
        ("rejected", []),
        ("candidate", ["previous"]),
        ("candidate", ["champion"]),
    ]
    assert dict(versions[2].offline_metrics) == {"candidate.NDCG@10": 0.3, "candidate.HR@10": 0.5}
    assert dict(versions[3].offline_metrics) == {"candidate.NDCG@10": 0.31, "ranker_p50_ms": 9.0}
    assert versions[3].run_id == RUN_ID and versions[1].run_id == ""
    assert not versions[1].HasField("verdict")
    verdict = versions[3].verdict
    assert (verdict.accepted, verdict.reason) == (False, GATE_VERDICT["reason"])
    assert [(c.name, c.passed) for c in verdict.checks] == [("baselines", True), ("latency", False)]
    assert verdict.checks[1].reason == "INT8 ranker p50 9.00 ms (budget 5 ms)"
    assert abs(versions[4].created_at.ToSeconds() - time.time()) < 60
    assert [
        (p.from_version, p.to_version, p.action, p.trigger, p.reason) for p in reply.promotions
    ] == [
        (2, 1, "rollback", "manual", "clicks fell"),
        (1, 2, "promote", "schedule", "NDCG@10 up 4%"),
        (0, 1, "promote", "cli", ""),
    ]
    assert reply.promotions[0].at.ToNanoseconds() >= reply.promotions[1].at.ToNanoseconds()
    assert [v.version for v in short.versions] == [4, 3]
    assert [p.action for p in short.promotions] == ["rollback", "promote"]
    assert other.model_name == "other" and not other.versions and not other.promotions


def _at(days_ago: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromSeconds(int(time.time() - days_ago * SECONDS_PER_DAY))
    return stamp


def _events() -> list[feedback_pb2.Event]:
    """Version "1": 10 impressions, 5 clicks, 2 add-to-carts, 1 purchase and 3 likes (no
    clicks) this week, and 4 impressions 40 days ago; version "10": 2 clicks, no impression;
    version "2": 1 impression; and 2 impressions attributed to no version."""
    counts = [
        ("1", IMPRESSION, 10, 1),
        ("1", CLICK, 5, 1),
        ("1", CART, 2, 1),
        ("1", PURCHASE, 1, 1),
        ("1", LIKE, 3, 1),
        ("1", IMPRESSION, 4, 40),
        ("10", CLICK, 2, 2),
        ("2", IMPRESSION, 1, 3),
        ("", IMPRESSION, 2, 1),
    ]
    return [
        event(
            f"e-{version}-{kind}-{days}-{i}",
            event_type=kind,
            model_version=version,
            occurred_at=_at(days),
        )
        for version, kind, n, days in counts
        for i in range(n)
    ]


def _counts(reply: models_pb2.GetOnlineMetricsResponse) -> list[tuple[str, int, int, int, int]]:
    return [
        (v.model_version, v.impressions, v.clicks, v.add_to_carts, v.purchases)
        for v in reply.versions
    ]


def _rate(rate: models_pb2.Rate) -> tuple[float, float, float]:
    return (rate.value, rate.low, rate.high)


async def test_online_metrics_count_each_version_since_a_time_with_intervals(
    stubs: Stubs,
) -> None:
    stored = await stubs.feedback.RecordEvents(feedback_pb2.RecordEventsRequest(events=_events()))
    assert stored.accepted == len(_events())

    recent = await stubs.models.GetOnlineMetrics(models_pb2.GetOnlineMetricsRequest())
    longer = await stubs.models.GetOnlineMetrics(models_pb2.GetOnlineMetricsRequest(since=_at(50)))
    named = await stubs.models.GetOnlineMetrics(
        models_pb2.GetOnlineMetricsRequest(model_versions=["10", "2", "nope"], since=_at(2.5))
    )

    assert _counts(recent) == [("1", 10, 5, 2, 1), ("2", 1, 0, 0, 0), ("10", 0, 2, 0, 0)]
    assert _counts(longer)[0] == ("1", 14, 5, 2, 1)
    assert _counts(named) == [("10", 0, 2, 0, 0)]
    first = recent.versions[0]
    assert _rate(first.click_through_rate) == pytest.approx((0.5, 0.236593, 0.763407), abs=1e-6)
    assert _rate(first.add_to_cart_rate) == pytest.approx((0.2, 0.056682, 0.509838), abs=1e-6)
    assert _rate(first.purchase_rate) == pytest.approx((0.1, 0.017876, 0.404150), abs=1e-6)
    no_impressions = recent.versions[2]
    assert _rate(no_impressions.click_through_rate) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("rpc", "request_", "fields"),
    [
        ("ListModelVersions", models_pb2.ListModelVersionsRequest(limit=-1), ["limit"]),
        (
            "ListModelVersions",
            models_pb2.ListModelVersionsRequest(limit=config.MAX_MODEL_LISTING + 1),
            ["limit"],
        ),
        (
            "ListModelVersions",
            models_pb2.ListModelVersionsRequest(model_name="a\x00b"),
            ["model_name"],
        ),
        (
            "ListModelVersions",
            models_pb2.ListModelVersionsRequest(model_name="m" * 129, limit=10_000),
            ["model_name", "limit"],
        ),
        (
            "GetOnlineMetrics",
            models_pb2.GetOnlineMetricsRequest(since=Timestamp(seconds=0, nanos=-1)),
            ["since"],
        ),
        (
            "GetOnlineMetrics",
            models_pb2.GetOnlineMetricsRequest(
                model_versions=[str(i) for i in range(config.MAX_METRIC_VERSIONS + 1)]
            ),
            ["model_versions"],
        ),
        (
            "GetOnlineMetrics",
            models_pb2.GetOnlineMetricsRequest(model_versions=["1", "", "v" * 65, "a\x00"]),
            ["model_versions[1]", "model_versions[2]", "model_versions[3]"],
        ),
    ],
)
async def test_bad_requests_name_each_offending_field(
    stubs: Stubs, rpc: str, request_: Message, fields: list[str]
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        await getattr(stubs.models, rpc)(request_)

    assert field_violations(refused.value) == fields


async def test_the_model_service_reports_its_health_and_is_listed(stubs: Stubs) -> None:
    health = await health_pb2_grpc.HealthStub(stubs.channel).Check(
        health_pb2.HealthCheckRequest(service="magpie.v1.ModelService"), timeout=5
    )
    call = reflection_pb2_grpc.ServerReflectionStub(stubs.channel).ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    listing = await call.read()
    await call.done_writing()

    assert health.status == health_pb2.HealthCheckResponse.SERVING
    names = {s.name for s in listing.list_services_response.service}
    assert {"magpie.v1.FeedbackService", "magpie.v1.ModelService"} <= names
