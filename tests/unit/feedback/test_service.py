"""Feedback logic with a hand-written storage fake."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Collection, Sequence

import pytest

from magpie.runtime.validation import MAX_ID_LENGTH
from magpie.v1 import common_pb2, feedback_pb2
from services.feedback import config
from services.feedback.consumer import EVENT_WEIGHTS
from services.feedback.service import (
    EventRow,
    EventType,
    FeedbackService,
    KnownProducts,
    Outcome,
    Stored,
    event_problem,
)
from services.feedback.storage import copy_text

NOW_US = 1_700_000_000_000_000


def row(event_id: str = "e", **fields: object) -> EventRow:
    values: dict[str, object] = {
        "user_id": "u",
        "product_id": "p1",
        "event_type": 2,
        "occurred_us": NOW_US,
        "rating": 0.0,
        "recommendation_id": "",
        "model_version": "",
        "position": 0,
        "session_id": "",
        "device": 0,
        "comment": "",
        **fields,
    }
    return (event_id, *values.values())  # type: ignore[return-value]


class FakeStorage:
    def __init__(self, products: set[str], delays: dict[str, float] | None = None) -> None:
        self.products = products
        self.events: dict[str, EventRow] = {}
        self.product_queries: list[set[str]] = []
        self.delays = delays or {}
        self.commits: list[str] = []

    async def existing_products(self, product_ids: Collection[str]) -> set[str]:
        self.product_queries.append(set(product_ids))
        return self.products & set(product_ids)

    async def insert(self, rows: Sequence[EventRow], source: str, now_us: int) -> Stored:
        """Like EventStore, with ids scoped by source (a key ``source/event_id``)."""
        await asyncio.sleep(self.delays.get(rows[0][0], 0.0))
        new, conflicts = set(), set()
        for r in rows:
            key = f"{source}/{r[0]}" if source else r[0]
            if key not in self.events:
                new.add(r[0])
                self.events[key] = r if r[4] is not None else (*r[:4], now_us, *r[5:])  # type: ignore[assignment]
            elif self.events[key][1:4] + self.events[key][5:] != r[1:4] + r[5:]:
                conflicts.add(r[0])
        self.commits.append(rows[0][0])
        return Stored(new, conflicts)


def service(storage: FakeStorage) -> FeedbackService:
    return FeedbackService(storage, KnownProducts(ttl_seconds=60, max_entries=100))


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, None),
        ({"event_type": 5, "rating": 5.0}, None),
        ({"event_type": 5, "rating": 5.5}, "rating must be between 0 and 5"),
        ({"event_type": 5, "rating": math.nan}, "rating must be between 0 and 5"),
        ({"rating": 1.0}, "rating must be 0 unless"),
        ({"event_type": 9}, "event_type must be one of 1-8"),
        ({"event_type": 6}, None),
        ({"event_type": 7}, None),
        ({"event_type": 8, "comment": "Lovely,\nbut small ünïcödé 👍🏽"}, None),
        ({"event_type": 8, "comment": "x" * 500}, None),
        ({"event_type": 8, "comment": "x" * 501}, "comment must be at most 500 characters"),
        ({"event_type": 8}, "comment must not be empty"),
        ({"event_type": 8, "comment": " \n "}, "comment must not be empty"),
        ({"event_type": 8, "comment": "a\tb"}, "comment must not contain control characters"),
        ({"event_type": 8, "comment": "a\r\nb"}, "comment must not contain control"),
        ({"event_type": 8, "comment": "a\x85b"}, "comment must not contain control"),
        ({"event_type": 8, "comment": "a\x00b"}, "comment must not contain control"),
        ({"event_type": 6, "comment": "nice"}, "comment must be empty unless"),
        ({"event_type": 8, "rating": 1.0}, "rating must be 0 unless"),
        ({"user_id": ""}, "user_id must not be empty"),
        ({"product_id": "x" * 129}, "product_id must be at most 128"),
        ({"session_id": "a\tb"}, "session_id must contain printable"),
        ({"occurred_us": NOW_US + 1}, "occurred_at is more than 300s in the future"),
        ({"occurred_us": -1}, "occurred_at must not be before 1970"),
        ({"occurred_us": None}, None),
        ({"position": -2}, "position must not be negative"),
        ({"device": 9}, "device must be one of 0-4"),
    ],
)
def test_event_problem(fields: dict[str, object], expected: str | None) -> None:
    problem = event_problem(row(**fields), latest_us=NOW_US)

    assert (problem is None) if expected is None else (problem or "").startswith(expected)


def test_copy_text_escapes_backslashes_and_line_feeds() -> None:
    text = copy_text(
        [
            row("a\\b", occurred_us=5),
            row("c", rating=1.5, occurred_us=6, event_type=8, comment="x\\n\ny"),
        ]
    )

    assert text == (
        b"a\\\\b\tu\tp1\t2\t5\t0.0\t\t\t0\t\t0\t\nc\tu\tp1\t8\t6\t1.5\t\t\t0\t\t0\tx\\\\n\\ny\n"
    )


def test_a_full_batch_of_the_longest_comments_fits_in_a_request() -> None:
    longest = "x" * MAX_ID_LENGTH
    event = feedback_pb2.Event(
        event_id=longest,
        user_id=longest,
        product_id=longest,
        event_type=common_pb2.EVENT_TYPE_COMMENT,
        recommendation_id=longest,
        model_version=longest,
        position=2**31 - 1,
        session_id=longest,
        device=common_pb2.DEVICE_TABLET,
        comment="👍" * config.MAX_COMMENT_LENGTH,
    )
    event.occurred_at.FromSeconds(253_402_300_799)
    request = feedback_pb2.RecordEventsRequest(events=[event] * config.MAX_BATCH)

    assert request.ByteSize() <= config.MAX_REQUEST_BYTES


class FakeProfiles:
    def __init__(self) -> None:
        self.deleted: list[list[str]] = []

    async def delete(self, keys: Sequence[str]) -> None:
        self.deleted.append(list(keys))


async def test_new_likes_and_dislikes_drop_their_users_cached_profiles_at_once() -> None:
    storage = FakeStorage(products={"p1"})
    storage.events["old"] = row("old", user_id="u4", event_type=7)
    profiles = FakeProfiles()
    feedback = FeedbackService(storage, KnownProducts(60, 100), profiles=profiles)

    await feedback.record(
        [
            row("a", user_id="u2", event_type=7),
            row("b", user_id="u1", event_type=6),
            row("c", user_id="u3", event_type=2),  # a click waits for the consumer's fold
            row("d", user_id="u5", event_type=7, product_id="unknown"),  # rejected
            row("old", user_id="u4", event_type=7),  # a duplicate: nothing new
            row("e", user_id="u1", event_type=7),
        ]
    )
    await feedback.record([row("f", user_id="u3", event_type=2)])

    assert profiles.deleted == [["u1", "u2"]]


def test_every_event_type_has_a_fold_weight() -> None:
    """The consumer indexes its weights by event type: a type without one would fail the
    fold (a NULL score)."""
    assert len(EVENT_WEIGHTS) == max(EventType)


def test_known_products_expire() -> None:
    known = KnownProducts(ttl_seconds=10, max_entries=3)
    known.add({"a", "b"}, now=100.0)

    assert known.unknown({"a", "c"}, now=105.0) == {"c"}
    assert known.unknown({"a"}, now=111.0) == {"a"}
    known.add({"c", "d"}, now=112.0)  # over the size limit: starts afresh
    assert known.unknown({"a", "c", "d"}, now=113.0) == {"a"}


async def test_record_sorts_events_into_outcomes() -> None:
    storage = FakeStorage(products={"p1", "p2"})
    storage.events["old"] = row("old")
    rows = [row("a"), row("a", product_id="p2"), row("old"), row("b", product_id="zz"), row("c")]

    result = await service(storage).record(rows)

    assert [(e, o) for e, o, _ in result.results] == [
        ("a", Outcome.ACCEPTED),
        ("a", Outcome.DUPLICATE),
        ("old", Outcome.DUPLICATE),
        ("b", Outcome.REJECTED),
        ("c", Outcome.ACCEPTED),
    ]
    assert (result.accepted, result.duplicates, result.rejected) == (2, 2, 1)
    assert storage.events["a"][2] == "p1"


async def test_unset_time_becomes_now() -> None:
    storage = FakeStorage(products={"p1"})

    await service(storage).record([row("a", occurred_us=None)])

    assert isinstance(storage.events["a"][4], int)


async def test_known_products_are_not_queried_again_but_misses_are() -> None:
    storage = FakeStorage(products={"p1"})
    feedback = service(storage)

    await feedback.record([row("a"), row("b", product_id="p2")])
    await feedback.record([row("c"), row("d", product_id="p2")])

    assert storage.product_queries == [{"p1", "p2"}, {"p2"}]


async def test_stream_acknowledges_in_order_though_later_batches_commit_first() -> None:
    storage = FakeStorage(products={"p1"}, delays={"b0": 0.05})

    async def batches() -> AsyncIterator[tuple[int, Sequence[EventRow]]]:
        for s in range(3):
            yield s, [row(f"b{s}")]

    acks = [s async for s, _ in service(storage).record_stream(batches())]

    assert acks == [0, 1, 2]
    assert storage.commits[0] != "b0"  # the slow first batch really was overtaken
