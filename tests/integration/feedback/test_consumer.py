"""The event consumer folds each committed event into the derived features exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import psycopg2
import pytest
import redis

from magpie.runtime.cache import PRODUCT_STATS, PROFILES, Cache
from magpie.runtime.db import Connection, Database
from services.feedback.consumer import EventConsumer, Fold, fold_once
from services.feedback.service import EventRow, FeedbackService, KnownProducts
from services.feedback.storage import EventStore
from tests.integration.feedback.events import query

pytestmark = pytest.mark.integration

DAY_US = 86_400 * 1_000_000
T0 = 1_700_000_000 * 1_000_000  # 2023-11-14 22:13:20 UTC


def row(
    event_id: str,
    user: str,
    product: str,
    kind: int,
    at: int = T0,
    rating: float = 0.0,
    comment: str = "",
) -> EventRow:
    return (event_id, user, product, kind, at, rating, "", "", 0, "", 0, comment)


@pytest.fixture
def db(clean_db: str, catalog: dict[str, str]) -> Iterator[Database]:
    database = Database(clean_db, pool_size=4, retry_seconds=0.5)
    yield database
    database.close()


async def record(db: Database, rows: list[EventRow]) -> None:
    result = await FeedbackService(EventStore(db), KnownProducts(60, 1000)).record(rows)
    assert result.accepted == len(rows), result


def fold_all(db: Database, expected: int | None = None) -> int:
    """Folds until caught up; with `expected`, keeps trying until that many were folded.

    Events wait while any older transaction in the whole cluster is still
    running (other databases included), so a busy shared server can hold
    them back for a moment.
    """
    give_up = time.monotonic() + 30
    total = 0
    while True:
        while (fold := db.run_sync(fold_once)).events:
            total += fold.events
        if expected is None or total >= expected or time.monotonic() > give_up:
            return total
        time.sleep(0.05)


def derived(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every derived table, rounded so that float sums compare exactly."""
    sql = {
        "daily": "SELECT product_id, day::text, impressions, clicks, add_to_carts, purchases"
        " FROM product_daily_counts ORDER BY 1, 2",
        "users": "SELECT user_id, impressions, clicks, add_to_carts, purchases"
        " FROM user_counts ORDER BY 1",
        "categories": "SELECT user_id, category, day::text, round(weight::numeric, 3)::float8"
        " FROM user_category_daily ORDER BY 1, 2, 3",
        "popularity": "SELECT product_id, round(score::numeric, 3)::float8"
        " FROM product_popularity ORDER BY 1",
    }
    return {name: query(url, text) for name, text in sql.items()}


EXPECTED = {
    "daily": [("p1", "2023-11-14", 0, 1, 0, 1), ("p3", "2023-11-14", 1, 0, 0, 0)],
    "users": [("u1", 1, 1, 0, 1), ("u2", 0, 0, 0, 0)],
    "categories": [
        ("u1", "Books", "2023-11-14", 6.0),
        ("u1", "Garden", "2023-11-14", 0.1),
        ("u2", "Books", "2023-11-14", 1.6),
    ],
    "popularity": [("p1", 6.0), ("p2", 1.6), ("p3", 0.1)],
}
FOUR_EVENTS = [
    row("e1", "u1", "p1", 2),
    row("e2", "u1", "p1", 4),
    row("e3", "u1", "p3", 1),
    row("e4", "u2", "p2", 5, rating=4.0),
]


async def test_fold_counts_products_users_and_categories(db: Database, clean_db: str) -> None:
    await record(db, FOUR_EVENTS)

    assert fold_all(db, expected=4) == 4

    assert derived(clean_db) == EXPECTED


async def test_folding_again_counts_nothing_twice(db: Database, clean_db: str) -> None:
    await record(db, FOUR_EVENTS)
    fold_all(db, expected=4)

    assert fold_all(db) == 0
    assert derived(clean_db) == EXPECTED


async def test_likes_weigh_two_dislikes_and_comments_nothing(db: Database, clean_db: str) -> None:
    """Every event type has a weight: a type without one would stop the fold for good."""
    await record(
        db,
        [
            row("l1", "u1", "p1", 6),
            row("d2", "u1", "p2", 7),
            row("m3", "u1", "p3", 8, comment="too small"),
        ],
    )

    assert fold_all(db, expected=3) == 3

    assert derived(clean_db) == {
        "daily": [],
        "users": [("u1", 0, 0, 0, 0)],
        "categories": [
            ("u1", "Books", "2023-11-14", 2.0),
            ("u1", "Garden", "2023-11-14", 0.0),
        ],
        "popularity": [("p1", 2.0), ("p2", 0.0), ("p3", 0.0)],
    }


class Crash(Exception):
    pass


def crashing_fold(conn: Connection) -> Fold:
    fold_once(conn)
    raise Crash  # the process dies after the upserts, before the commit


async def test_a_fold_that_dies_before_commit_leaves_no_trace(db: Database, clean_db: str) -> None:
    await record(db, FOUR_EVENTS)

    with pytest.raises(Crash):
        db.run_sync(crashing_fold)
    before_restart = derived(clean_db)
    folded = fold_all(db, expected=4)

    assert before_restart == {name: [] for name in EXPECTED}
    assert folded == 4
    assert derived(clean_db) == EXPECTED


async def test_restarts_across_many_batches_count_each_event_once(
    db: Database, clean_db: str
) -> None:
    n = 12_000  # more than two consumer batches
    await record(db, [row(f"m{i}", f"u{i % 7}", "p1", 2, at=T0 + i) for i in range(n // 2)])
    first = db.run_sync(fold_once).events  # a first consumer folds one batch...
    with pytest.raises(Crash):
        db.run_sync(crashing_fold)  # ...its successor dies mid-way...
    await record(db, [row(f"m{i}", f"u{i % 7}", "p1", 2, at=T0 + i) for i in range(n // 2, n)])
    fold_all(db, expected=n - first)  # ...and a third one finishes.

    assert query(clean_db, "SELECT sum(clicks)::int FROM user_counts") == [(n,)]
    assert query(clean_db, "SELECT sum(clicks)::int FROM product_daily_counts") == [(n,)]


async def test_an_event_committing_late_is_not_skipped(db: Database, clean_db: str) -> None:
    slow = psycopg2.connect(clean_db)
    try:
        with slow.cursor() as cur:  # a writer that began first and commits last
            cur.execute(
                "INSERT INTO events (event_id, user_id, product_id, event_type, occurred_at)"
                " VALUES ('late', 'u1', 'p1', 2, now())"
            )
        await record(db, [row("early", "u1", "p1", 2)])
        folded_while_open = fold_all(db)
        slow.commit()
        folded_after = fold_all(db, expected=2)
    finally:
        slow.close()

    assert folded_while_open == 0  # "early" waits: "late" could still land before it
    assert folded_after == 2
    assert query(clean_db, "SELECT clicks FROM user_counts") == [(2,)]


async def test_popularity_halves_every_seven_days(db: Database, clean_db: str) -> None:
    await record(db, [row("a", "u1", "p1", 2, at=T0)])
    fold_all(db, expected=1)
    await record(db, [row("b", "u1", "p1", 2, at=T0 + 7 * DAY_US), row("c", "u2", "p2", 2)])
    await record(db, [row("d", "u2", "p2", 2, at=T0 + 14 * DAY_US)])
    fold_all(db, expected=3)

    assert query(
        clean_db,
        "SELECT product_id, round(score::numeric, 6)::float8, extract(epoch FROM as_of)::bigint"
        " FROM product_popularity ORDER BY 1",
    ) == [
        ("p1", 1.5, (T0 + 7 * DAY_US) // 1_000_000),
        ("p2", 1.25, (T0 + 14 * DAY_US) // 1_000_000),
    ]


async def test_consumer_invalidates_touched_users_and_products(
    db: Database, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.mset(
        {
            "magpie:db:profiles:u1": b"x",
            "magpie:db:catalog-stats:p1": b"x",
            "magpie:db:profiles:u9": b"x",
        }
    )
    caches = [
        Cache(redis_url, prefix="magpie:db:", namespace=n, ttl_seconds=60)
        for n in (PROFILES, PRODUCT_STATS)
    ]
    await record(db, [row("a", "u1", "p1", 2)])

    consumer = EventConsumer(db, *caches)
    give_up = time.monotonic() + 30
    while not (fold := await consumer.step()).events and time.monotonic() < give_up:
        await asyncio.sleep(0.05)
    for cache in caches:
        await cache.close()

    assert fold.events == 1
    assert sorted(k.decode() for k in client.keys("magpie:*")) == ["magpie:db:profiles:u9"]
