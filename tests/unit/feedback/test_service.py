"""Feedback logic with a hand-written storage fake."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Collection, Sequence

import pytest

from services.feedback.service import (
    EventRow,
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
        ({"event_type": 6}, "event_type must be one of 1-5"),
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


def test_copy_text_escapes_backslashes_only() -> None:
    text = copy_text([row("a\\b", occurred_us=5), row("c", rating=1.5, occurred_us=6)])

    assert text == b"a\\\\b\tu\tp1\t2\t5\t0.0\t\t\t0\t\t0\nc\tu\tp1\t2\t6\t1.5\t\t\t0\t\t0\n"


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
