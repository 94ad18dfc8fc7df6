"""The event consumer: folds committed events, in commit order, into derived features.

Each fold is one transaction that takes the event-fold advisory lock (or, when another
replica holds it, leaves the fold to that replica), reads
the checkpoint, takes the next events in `(xid, seq)` order among those whose
inserting transaction has ended (`xid < pg_snapshot_xmin(pg_current_snapshot())`,
see migration 0002), adds them to `product_daily_counts`,
`product_popularity`, `user_counts` and `user_category_daily`, and moves the
checkpoint past them. Counters and checkpoint commit together, so every event
is counted exactly once however often the consumer is stopped and restarted.
After the commit the cache entries of the users and products touched are
invalidated.

Event weights (popularity, category affinity): impression 0.1, click 1, like 2,
add-to-cart 3, purchase 5, rating 0.4 per star; dislike and comment 0 (a comment may
be praise or complaint). Popularity decays with a half-life of 7 days: a product's
score at `as_of` is the sum of its events' weights, each halved for every 7 days
between the event and `as_of`.

`fold_once` is synchronous so that a Celery task can call it; the service
runs `EventConsumer.run` as a background task.

Caveat of the commit-order rule: the snapshot's xmin is cluster-wide, so any
long-running write transaction on the same PostgreSQL server (another
database included) holds the consumer back until it ends. Keep bulk writes
in short transactions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from magpie.runtime.cache import Cache
from magpie.runtime.db import Connection, Database
from magpie.runtime.decay import decay_sql
from magpie.runtime.locks import EVENT_FOLD_LOCK
from magpie.runtime.metrics import CONSUMER_LAG
from magpie.runtime.units import SECONDS_PER_DAY
from services.feedback import config

__all__ = ["EVENT_WEIGHTS", "HALF_LIFE_SECONDS", "EventConsumer", "Fold", "fold_once", "lag"]

logger = logging.getLogger(__name__)

EVENT_WEIGHTS = (0.1, 1.0, 3.0, 5.0, 0.0, 2.0, 0.0, 0.0)
"""Weight of event types 1-8 (impression, click, add-to-cart, purchase, rating (unused:
weighed by stars), like, dislike, comment). Every type needs one: an event without a
weight would make the fold insert a NULL score and fail."""
RATING_WEIGHT_PER_STAR = 0.4
HALF_LIFE_SECONDS = 7 * SECONDS_PER_DAY


def _decay(age_sql: str) -> str:
    return decay_sql(age_sql, HALF_LIFE_SECONDS)


_COUNTS = """
    count(*) FILTER (WHERE event_type = 1), count(*) FILTER (WHERE event_type = 2),
    count(*) FILTER (WHERE event_type = 3), count(*) FILTER (WHERE event_type = 4)
"""
_ADD_COUNTS = """
    impressions = t.impressions + EXCLUDED.impressions, clicks = t.clicks + EXCLUDED.clicks,
    add_to_carts = t.add_to_carts + EXCLUDED.add_to_carts,
    purchases = t.purchases + EXCLUDED.purchases
"""
_AS_OF = "greatest(t.as_of, EXCLUDED.as_of)"

_FOLD = f"""
WITH batch AS MATERIALIZED (
    SELECT xid, seq, user_id, product_id, event_type, occurred_at,
           (occurred_at AT TIME ZONE 'UTC')::date AS day,
           CASE WHEN event_type = 5 THEN rating * %(per_star)s
                ELSE (%(weights)s::float8[])[event_type] END AS weight
    FROM events
    WHERE (xid, seq) > (%(xid)s::xid8, %(seq)s)
      AND xid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY xid, seq
    LIMIT %(limit)s
), daily AS (
    INSERT INTO product_daily_counts AS t
        (product_id, day, impressions, clicks, add_to_carts, purchases)
    SELECT product_id, day, {_COUNTS} FROM batch WHERE event_type <= 4 GROUP BY product_id, day
    ON CONFLICT (product_id, day) DO UPDATE SET {_ADD_COUNTS}
), popularity AS (
    INSERT INTO product_popularity AS t (product_id, score, as_of)
    SELECT product_id, sum(weight * {_decay("as_of - occurred_at")}), as_of
    FROM (SELECT product_id, weight, occurred_at,
                 max(occurred_at) OVER (PARTITION BY product_id) AS as_of
          FROM batch) AS b
    GROUP BY product_id, as_of
    ON CONFLICT (product_id) DO UPDATE SET
        score = t.score * {_decay(f"{_AS_OF} - t.as_of")}
              + EXCLUDED.score * {_decay(f"{_AS_OF} - EXCLUDED.as_of")},
        as_of = {_AS_OF}
), user_totals AS (
    INSERT INTO user_counts AS t
        (user_id, impressions, clicks, add_to_carts, purchases, last_event_at)
    SELECT user_id, {_COUNTS}, max(occurred_at) FROM batch GROUP BY user_id
    ON CONFLICT (user_id) DO UPDATE SET {_ADD_COUNTS},
        last_event_at = greatest(t.last_event_at, EXCLUDED.last_event_at)
), categories AS (
    INSERT INTO user_category_daily AS t (user_id, category, day, weight)
    SELECT b.user_id, split_part(p.category_path, ' > ', 1), b.day, sum(b.weight)
    FROM batch AS b JOIN products AS p USING (product_id)
    WHERE p.category_path <> ''
    GROUP BY 1, 2, 3
    ON CONFLICT (user_id, category, day) DO UPDATE SET weight = t.weight + EXCLUDED.weight
)
SELECT last.xid, last.seq, (SELECT count(*) FROM batch),
       (SELECT array_agg(DISTINCT user_id) FROM batch),
       (SELECT array_agg(DISTINCT product_id) FROM batch)
FROM (SELECT xid, seq FROM batch ORDER BY xid DESC, seq DESC LIMIT 1) AS last
"""


@dataclass(frozen=True, slots=True)
class Fold:
    """What one fold did: events counted, and the users and products they touched."""

    events: int = 0
    user_ids: Sequence[str] = ()
    product_ids: Sequence[str] = ()


def fold_once(conn: Connection, consumer: str = config.CONSUMER_NAME) -> Fold:
    """Folds the next batch of committed events; run inside one transaction (`Database.run`)."""
    with conn.cursor() as cur:
        # Another replica folding now: nothing to do (waiting would only hit lock_timeout).
        cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (EVENT_FOLD_LOCK,))
        if not cur.fetchone()[0]:  # type: ignore[index]
            return Fold()
        cur.execute(
            "INSERT INTO consumer_checkpoints (consumer) VALUES (%s) ON CONFLICT DO NOTHING",
            (consumer,),
        )
        cur.execute(
            "SELECT xid::text, seq FROM consumer_checkpoints WHERE consumer = %s FOR UPDATE",
            (consumer,),
        )
        xid, seq = cur.fetchone()  # type: ignore[misc]
        cur.execute(
            _FOLD,
            {
                "xid": xid,
                "seq": seq,
                "limit": config.CONSUMER_BATCH,
                "weights": list(EVENT_WEIGHTS),
                "per_star": RATING_WEIGHT_PER_STAR,
            },
        )
        row = cur.fetchone()
        if row is None:
            return Fold()
        last_xid, last_seq, events, user_ids, product_ids = row
        cur.execute(
            """
            UPDATE consumer_checkpoints SET xid = %s::xid8, seq = %s, updated_at = now()
            WHERE consumer = %s
            """,
            (last_xid, last_seq, consumer),
        )
        return Fold(events, user_ids, product_ids)


def lag(conn: Connection, consumer: str = config.CONSUMER_NAME) -> int:
    """Events stored after the consumer's checkpoint (by sequence number: an event of a
    transaction that commits late may briefly be counted after it was folded)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT coalesce(max(seq), 0) - coalesce((SELECT seq FROM consumer_checkpoints"
            " WHERE consumer = %s), 0) FROM events",
            (consumer,),
        )
        row = cur.fetchone()
    return max(int(row[0]), 0) if row else 0


class EventConsumer:
    """Runs `fold_once` until stopped and invalidates caches after each commit."""

    def __init__(self, db: Database, profiles: Cache, product_stats: Cache) -> None:
        self._db = db
        self._profiles = profiles
        self._product_stats = product_stats

    async def step(self) -> Fold:
        """One fold plus its cache invalidation."""
        fold = await self._db.run(fold_once)
        if fold.events:
            await self._profiles.delete(fold.user_ids)
            await self._product_stats.delete(fold.product_ids)
        if fold.events < config.CONSUMER_BATCH:  # caught up, or nearly: measure what is left
            CONSUMER_LAG.set(await self._db.run(lag))
        return fold

    async def run(self) -> None:
        """Folds until cancelled; pauses when caught up, backs off while the database is down."""
        while True:
            try:
                fold = await self.step()
            except Exception:  # the consumer outlives failures; logged with traceback
                logger.exception("event fold failed; retrying")
                await asyncio.sleep(1.0)
                continue
            if fold.events < config.CONSUMER_BATCH:
                await asyncio.sleep(config.CONSUMER_IDLE_SECONDS)
