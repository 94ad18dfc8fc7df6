"""RecordEvents and StreamEvents against the real service, PostgreSQL and gRPC."""

from __future__ import annotations

import time

import grpc
import pytest

from magpie.v1 import common_pb2, feedback_pb2_grpc
from magpie.v1 import feedback_pb2 as pb
from tests.integration.feedback.conftest import add_products
from tests.integration.feedback.events import clicks, event, query, stored_ids
from tests.support import field_violations

pytestmark = pytest.mark.integration

Stub = feedback_pb2_grpc.FeedbackServiceStub
ACCEPTED, DUPLICATE, REJECTED = (
    pb.EVENT_OUTCOME_ACCEPTED,
    pb.EVENT_OUTCOME_DUPLICATE,
    pb.EVENT_OUTCOME_REJECTED,
)


async def test_record_events_stores_every_field(feedback: Stub, clean_db: str) -> None:
    sent = event(
        "e1",
        user_id="new-user",
        product_id="p2",
        event_type=common_pb2.EVENT_TYPE_RATING,
        rating=4.5,
        recommendation_id="rec-9",
        model_version="ranker-3",
        position=2,
        session_id="s1",
        device=common_pb2.DEVICE_MOBILE,
    )
    sent.occurred_at.FromSeconds(1_700_000_000)

    reply = await feedback.RecordEvents(pb.RecordEventsRequest(events=[sent]))

    assert [(r.event_id, r.outcome) for r in reply.results] == [("e1", ACCEPTED)]
    assert (reply.accepted, reply.duplicates, reply.rejected) == (1, 0, 0)
    rows = query(
        clean_db,
        """SELECT user_id, product_id, event_type, extract(epoch FROM occurred_at), rating,
                  recommendation_id, model_version, position, session_id, device FROM events""",
    )
    assert rows == [("new-user", "p2", 5, 1_700_000_000, 4.5, "rec-9", "ranker-3", 2, "s1", 2)]


async def test_unset_time_is_the_servers_clock(feedback: Stub, clean_db: str) -> None:
    before = time.time()
    await feedback.RecordEvents(pb.RecordEventsRequest(events=[event("e1")]))
    [(occurred,)] = query(clean_db, "SELECT extract(epoch FROM occurred_at) FROM events")
    assert before - 1 <= float(occurred) <= time.time() + 1


async def test_replaying_a_batch_stores_it_once(feedback: Stub, clean_db: str) -> None:
    batch = pb.RecordEventsRequest(events=clicks("r", 50))

    replies = [await feedback.RecordEvents(batch) for _ in range(3)]

    assert [r.accepted for r in replies] == [50, 0, 0]
    assert [r.duplicates for r in replies] == [0, 50, 50]
    assert {r.outcome for r in replies[2].results} == {DUPLICATE}
    assert len(stored_ids(clean_db)) == 50


async def test_repeated_id_in_one_batch_first_wins(feedback: Stub, clean_db: str) -> None:
    batch = [event("same", product_id="p1"), event("same", product_id="p2"), event("other")]

    reply = await feedback.RecordEvents(pb.RecordEventsRequest(events=batch))

    assert [r.outcome for r in reply.results] == [ACCEPTED, DUPLICATE, ACCEPTED]
    assert query(clean_db, "SELECT product_id FROM events WHERE event_id = 'same'") == [("p1",)]


async def test_bad_events_are_rejected_one_by_one(feedback: Stub, clean_db: str) -> None:
    future = event("future")
    future.occurred_at.FromSeconds(int(time.time()) + 3600)
    batch = [
        event("good-1"),
        event("unknown-product", product_id="nope"),
        event("rating-too-high", event_type=common_pb2.EVENT_TYPE_RATING, rating=7),
        event("rating-on-click", rating=3),
        future,
        event("no-type", event_type=common_pb2.EVENT_TYPE_UNSPECIFIED),
        event("", user_id="u2"),
        event("no-user", user_id=""),
        event("bad-position", position=-1),
        event("good-2", event_type=common_pb2.EVENT_TYPE_RATING, rating=0),
    ]

    reply = await feedback.RecordEvents(pb.RecordEventsRequest(events=batch))

    outcomes = {r.event_id: (r.outcome, r.reason) for r in reply.results}
    assert [r.event_id for r in reply.results] == [e.event_id for e in batch]
    assert (reply.accepted, reply.duplicates, reply.rejected) == (2, 0, 8)
    assert outcomes["good-1"][0] == outcomes["good-2"][0] == ACCEPTED
    reasons = {k: reason for k, (o, reason) in outcomes.items() if o == REJECTED}
    assert reasons["unknown-product"] == "unknown product_id"
    assert "rating" in reasons["rating-too-high"]
    assert "rating must be 0" in reasons["rating-on-click"]
    assert "future" in reasons["future"]
    assert "event_type" in reasons["no-type"]
    assert "event_id" in reasons[""]
    assert "user_id" in reasons["no-user"]
    assert "position" in reasons["bad-position"]
    assert stored_ids(clean_db) == ["good-1", "good-2"]


async def test_a_product_added_later_is_accepted(feedback: Stub, clean_db: str) -> None:
    first = await feedback.RecordEvents(
        pb.RecordEventsRequest(events=[event("e", product_id="p9")])
    )
    add_products(clean_db, {"p9": "Toys"})
    second = await feedback.RecordEvents(
        pb.RecordEventsRequest(events=[event("e", product_id="p9")])
    )

    assert first.results[0].outcome == REJECTED
    assert second.results[0].outcome == ACCEPTED


@pytest.mark.parametrize(("size", "field"), [(0, "events"), (5001, "events")])
async def test_empty_or_oversized_batch_is_invalid(feedback: Stub, size: int, field: str) -> None:
    request = pb.RecordEventsRequest(events=clicks("x", size))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await feedback.RecordEvents(request)

    assert field_violations(raised.value) == [field]


async def test_stream_acknowledges_each_batch_in_order(feedback: Stub, clean_db: str) -> None:
    batches = [pb.StreamEventsRequest(sequence=s, events=clicks(f"b{s}", 100)) for s in range(1, 9)]
    resent = [*batches[:5], batches[1], batches[2], *batches[5:]]  # a client that resends

    acks = [ack async for ack in feedback.StreamEvents(iter(resent))]

    assert [a.sequence for a in acks] == [1, 2, 3, 4, 5, 2, 3, 6, 7, 8]
    assert [a.result.accepted for a in acks] == [100] * 5 + [0, 0] + [100] * 3
    assert [a.result.duplicates for a in acks] == [0] * 5 + [100, 100] + [0] * 3
    assert len(stored_ids(clean_db)) == 800


async def test_stream_replayed_three_times_stores_once(feedback: Stub, clean_db: str) -> None:
    batches = [pb.StreamEventsRequest(sequence=s, events=clicks(f"b{s}", 50)) for s in range(4)]

    totals = []
    for _ in range(3):
        acks = [ack async for ack in feedback.StreamEvents(iter(batches))]
        totals.append(sum(a.result.accepted for a in acks))

    assert totals == [200, 0, 0]
    assert len(stored_ids(clean_db)) == 200


async def test_interactive_stream_gets_each_ack_before_sending_more(feedback: Stub) -> None:
    call = feedback.StreamEvents()
    sequences = []
    for s in range(3):
        await call.write(pb.StreamEventsRequest(sequence=s, events=clicks(f"i{s}", 10)))
        ack = await call.read()
        sequences.append(ack.sequence)
    await call.done_writing()

    assert sequences == [0, 1, 2]


async def test_bad_stream_message_ends_stream_after_earlier_acks(feedback: Stub) -> None:
    requests = [
        pb.StreamEventsRequest(sequence=1, events=clicks("ok", 5)),
        pb.StreamEventsRequest(sequence=2, events=[]),
    ]
    acks = []

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for ack in feedback.StreamEvents(iter(requests)):
            acks.append(ack.sequence)

    assert acks == [1]
    assert field_violations(raised.value) == ["events"]
