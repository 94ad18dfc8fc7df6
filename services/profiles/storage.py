"""PostgreSQL storage of user profiles, and their Redis cache.

Static attributes come from `users`; recent interactions and purchases are
read from `events` through its (user_id, occurred_at) and purchase indexes;
counts and category weights from the consumer's `user_counts` and
`user_category_daily`. Deleting a user takes the event-fold advisory lock, so
the consumer cannot re-create derived rows from events being deleted.
Product-level counters (`product_daily_counts`, `product_popularity`) are
anonymous aggregates and stay.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg2 import sql
from psycopg2.extras import execute_values

from magpie.runtime.cache import Cache
from magpie.runtime.db import Connection, Database
from magpie.runtime.locks import EVENT_FOLD_LOCK
from services.profiles import config
from services.profiles.service import (
    Affinity,
    Attributes,
    Counts,
    Interaction,
    StoredProfile,
    Window,
    category_affinities,
)

__all__ = ["CachedProfiles", "ProfileStore"]

_USERS = """
    SELECT user_id, age_band, gender, region, segments,
           consent_personalization, consent_analytics, updated_at
    FROM users WHERE user_id = ANY(%s)
"""
_RECENT = """
    SELECT u.user_id, e.product_id, e.event_type, e.occurred_at
    FROM unnest(%s::text[]) AS u(user_id)
    CROSS JOIN LATERAL (
        SELECT product_id, event_type, occurred_at, seq FROM events
        WHERE events.user_id = u.user_id
        ORDER BY occurred_at DESC, seq DESC LIMIT %s
    ) AS e
    ORDER BY u.user_id, e.occurred_at DESC, e.seq DESC
"""
_PURCHASED = """
    SELECT user_id, product_id FROM events
    WHERE user_id = ANY(%s) AND event_type = 4
    GROUP BY user_id, product_id
    ORDER BY user_id, max(occurred_at) DESC, product_id
"""
_COUNTS = """
    SELECT user_id, impressions, clicks, add_to_carts, purchases, last_event_at
    FROM user_counts WHERE user_id = ANY(%s)
"""
_CATEGORIES = """
    SELECT user_id, category,
           coalesce(sum(weight) FILTER (WHERE day > today - 7), 0),
           coalesce(sum(weight) FILTER (WHERE day > today - 30), 0),
           sum(weight)
    FROM user_category_daily, (SELECT (now() AT TIME ZONE 'UTC')::date AS today) AS t
    WHERE user_id = ANY(%s)
    GROUP BY user_id, category
"""
_USER_TABLES = ("events", "user_counts", "user_category_daily", "users")


class ProfileStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert(self, users: Sequence[tuple[str, Attributes]]) -> None:
        rows = [
            (
                user_id,
                a.age_band,
                a.gender,
                a.region,
                list(a.segments),
                a.consent_personalization,
                a.consent_analytics,
            )
            for user_id, a in users
        ]

        def write(conn: Connection) -> None:
            with conn.cursor() as cur:
                execute_values(
                    cur,
                    """
                    INSERT INTO users (user_id, age_band, gender, region, segments,
                                       consent_personalization, consent_analytics)
                    VALUES %s
                    ON CONFLICT (user_id) DO UPDATE SET
                        age_band = EXCLUDED.age_band, gender = EXCLUDED.gender,
                        region = EXCLUDED.region, segments = EXCLUDED.segments,
                        consent_personalization = EXCLUDED.consent_personalization,
                        consent_analytics = EXCLUDED.consent_analytics,
                        updated_at = now()
                    """,
                    rows,
                    template="(%s, %s, %s, %s, %s::text[], %s, %s)",
                )

        await self._db.run(write)

    async def get_many(self, user_ids: Sequence[str], history: int) -> dict[str, StoredProfile]:
        ids = list(user_ids)

        def read(conn: Connection) -> dict[str, StoredProfile]:
            with conn.cursor() as cur:
                cur.execute(_USERS, (ids,))
                users = {row[0]: row for row in cur.fetchall()}
                cur.execute(_RECENT, (ids, history))
                recent: dict[str, list[Interaction]] = {}
                for user_id, product_id, event_type, occurred_at in cur.fetchall():
                    recent.setdefault(user_id, []).append(
                        Interaction(product_id, event_type, occurred_at)
                    )
                cur.execute(_PURCHASED, (ids,))
                purchased: dict[str, list[str]] = {}
                for user_id, product_id in cur.fetchall():
                    purchased.setdefault(user_id, []).append(product_id)
                cur.execute(_COUNTS, (ids,))
                counts = {row[0]: row for row in cur.fetchall()}
                cur.execute(_CATEGORIES, (ids,))
                weights: dict[str, list[tuple[str, float, float, float]]] = {}
                for user_id, category, last_7d, last_30d, all_time in cur.fetchall():
                    weights.setdefault(user_id, []).append((category, last_7d, last_30d, all_time))
            profiles = {}
            for user_id in users.keys() | recent.keys() | counts.keys():
                user = users.get(user_id)
                count = counts.get(user_id)
                stamps = [t for t in (user and user[7], count and count[5]) if t]
                profiles[user_id] = StoredProfile(
                    user_id=user_id,
                    attributes=_attributes(user) if user else Attributes(),
                    updated_at=max(stamps) if stamps else None,
                    recent=tuple(recent.get(user_id, ())),
                    affinities=category_affinities(weights.get(user_id, [])),
                    purchased=tuple(purchased.get(user_id, ())[: config.MAX_PURCHASED]),
                    counts=Counts(*count[1:5]) if count else Counts(),
                )
            return profiles

        return await self._db.run(read)

    async def delete(self, user_id: str) -> tuple[bool, int]:
        """Deletes the user and every row about them; returns (existed, events deleted)."""

        def remove(conn: Connection) -> tuple[bool, int]:
            deleted = {}
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (EVENT_FOLD_LOCK,))
                for table in _USER_TABLES:
                    cur.execute(
                        sql.SQL("DELETE FROM {} WHERE user_id = %s").format(sql.Identifier(table)),
                        (user_id,),
                    )
                    deleted[table] = cur.rowcount
            return any(deleted.values()), deleted["events"]

        return await self._db.run(remove)


def _attributes(row: tuple[Any, ...]) -> Attributes:
    return Attributes(
        age_band=row[1],
        gender=row[2],
        region=row[3],
        segments=tuple(row[4]),
        consent_personalization=row[5],
        consent_analytics=row[6],
    )


class CachedProfiles:
    """Profiles in the Redis cache as JSON, keyed by user id."""

    def __init__(self, cache: Cache) -> None:
        self._cache = cache

    async def get_many(self, user_ids: Sequence[str]) -> dict[str, StoredProfile]:
        found = await self._cache.get_many(user_ids)
        return {user_id: _decode(value) for user_id, value in found.items()}

    async def set_many(self, profiles: Sequence[StoredProfile]) -> None:
        await self._cache.set_many({p.user_id: _encode(p) for p in profiles})

    async def delete(self, user_ids: Sequence[str]) -> None:
        await self._cache.delete(user_ids)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _encode(p: StoredProfile) -> bytes:
    a = p.attributes
    return json.dumps(
        {
            "user_id": p.user_id,
            "known": p.known,
            "updated_at": _time(p.updated_at),
            "attributes": [
                a.age_band,
                a.gender,
                a.region,
                list(a.segments),
                a.consent_personalization,
                a.consent_analytics,
            ],
            "recent": [[i.product_id, i.event_type, _time(i.occurred_at)] for i in p.recent],
            "affinities": [[f.category, int(f.window), f.score] for f in p.affinities],
            "purchased": list(p.purchased),
            "counts": [
                p.counts.impressions,
                p.counts.clicks,
                p.counts.add_to_carts,
                p.counts.purchases,
            ],
        }
    ).encode()


def _decode(value: bytes) -> StoredProfile:
    d = json.loads(value)
    age_band, gender, region, segments, personalization, analytics = d["attributes"]
    return StoredProfile(
        user_id=d["user_id"],
        known=d["known"],
        updated_at=datetime.fromisoformat(d["updated_at"]) if d["updated_at"] else None,
        attributes=Attributes(
            age_band, gender, region, tuple(segments), personalization, analytics
        ),
        recent=tuple(
            Interaction(product, kind, datetime.fromisoformat(at))
            for product, kind, at in d["recent"]
        ),
        affinities=tuple(Affinity(c, Window(w), s) for c, w, s in d["affinities"]),
        purchased=tuple(d["purchased"]),
        counts=Counts(*d["counts"]),
    )
