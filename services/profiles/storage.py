"""PostgreSQL storage of user profiles, and their Redis cache.

Static attributes come from `users`; recent interactions, purchases and dislikes
are read from `events` through its (user_id, occurred_at), purchase and like/dislike
indexes; counts and category weights from the consumer's `user_counts` and
`user_category_daily`. Deleting a user takes the event-fold advisory lock, so
the consumer cannot re-create derived rows from events being deleted, and records
the keyed hash of the id in `deleted_users` (migration 0005) in the same transaction.
Product-level counters (`product_daily_counts`, `product_popularity`) are
anonymous aggregates and stay.

The cache holds profiles by user id in the `PROFILES` namespace (which the feedback
consumer invalidates too) and each user's write marker, keyed by the hashed id, in
`WRITE_MARKERS` (see services.profiles.service for the protocol).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import execute_values

from magpie.runtime.cache import Cache
from magpie.runtime.db import Connection, Database
from magpie.runtime.locks import EVENT_FOLD_LOCK
from magpie.runtime.paging import like_escape
from services.profiles import config
from services.profiles.service import (
    Affinity,
    Attributes,
    Counts,
    Interaction,
    ListedUser,
    StoredProfile,
    Window,
    category_affinities,
)

__all__ = ["WRITE_MARKERS", "CachedProfiles", "ProfileStore"]

WRITE_MARKERS = "profile-writes"
"""Cache namespace of the profiles' write markers."""

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
        WHERE events.user_id = u.user_id AND event_type <> 7
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
_DISLIKED = """
    SELECT user_id, product_id FROM events
    WHERE user_id = ANY(%s) AND event_type IN (6, 7)
    GROUP BY user_id, product_id
    HAVING (array_agg(event_type ORDER BY occurred_at DESC, seq DESC))[1] = 7
    ORDER BY user_id, max(occurred_at) DESC, product_id
"""
"""Products whose latest like (6) or dislike (7) is a dislike: a like takes one back."""
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
_LIST_USERS = """
    SELECT u.user_id, u.consent_personalization IS FALSE,
           COALESCE(c.impressions, 0), COALESCE(c.clicks, 0),
           COALESCE(c.add_to_carts, 0), COALESCE(c.purchases, 0)
    FROM users u LEFT JOIN user_counts c ON c.user_id = u.user_id
    WHERE u.user_id > %(after)s AND u.user_id LIKE %(pattern)s
    ORDER BY u.user_id
    LIMIT %(limit)s
"""
"""A page of `users` rows by id with their counts, in one query. Every id sorts after ""
(the first page) and is LIKE '%' (no prefix)."""
_USER_TABLES = ("events", "user_counts", "user_category_daily", "users")
_RECORD_DELETION = """
    INSERT INTO deleted_users (user_hash, deleted_at) VALUES (%s, now())
    ON CONFLICT (user_hash) DO UPDATE
        SET deleted_at = greatest(deleted_users.deleted_at, EXCLUDED.deleted_at)
"""


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
                purchased = _products_by_user(cur, _PURCHASED, ids)
                disliked = _products_by_user(cur, _DISLIKED, ids)
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
                    disliked=tuple(disliked.get(user_id, ())[: config.MAX_DISLIKED]),
                    counts=Counts(*count[1:5]) if count else Counts(),
                )
            return profiles

        return await self._db.run(read)

    async def list_users(self, prefix: str, after_id: str, limit: int) -> list[ListedUser]:
        params = {"after": after_id, "pattern": like_escape(prefix) + "%", "limit": limit}

        def read(conn: Connection) -> list[ListedUser]:
            with conn.cursor() as cur:
                cur.execute(_LIST_USERS, params)
                return [
                    ListedUser(user_id, Counts(*counts), refused)
                    for user_id, refused, *counts in cur.fetchall()
                ]

        return await self._db.run(read)

    async def delete(self, user_id: str, user_hash: str) -> tuple[bool, int]:
        """Deletes the user and every row about them and records `user_hash` as deleted
        now; returns (existed, events deleted)."""

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
                cur.execute(_RECORD_DELETION, (user_hash,))
            return any(deleted.values()), deleted["events"]

        return await self._db.run(remove)


def _products_by_user(cur: Cursor, query: str, ids: list[str]) -> dict[str, list[str]]:
    """(user_id, product_id) rows of `query`, grouped by user in query order."""
    cur.execute(query, (ids,))
    products: dict[str, list[str]] = {}
    for user_id, product_id in cur.fetchall():
        products.setdefault(user_id, []).append(product_id)
    return products


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
    """Profiles in the Redis cache as JSON, keyed by user id, guarded by write markers."""

    def __init__(self, profiles: Cache, markers: Cache, user_hash: Callable[[str], str]) -> None:
        """`markers`: the `WRITE_MARKERS` namespace; `user_hash` names a user's marker."""
        self._profiles = profiles
        self._markers = markers
        self._user_hash = user_hash

    async def get_many(self, user_ids: Sequence[str]) -> dict[str, StoredProfile]:
        return await self._profiles.get_decoded(user_ids, _decode)

    async def markers(self, user_ids: Sequence[str]) -> dict[str, bytes]:
        keys = {user_id: self._user_hash(user_id) for user_id in user_ids}
        found = await self._markers.get_many(list(keys.values()))
        return {user_id: found[key] for user_id, key in keys.items() if key in found}

    async def set_many(
        self, profiles: Sequence[StoredProfile], markers: Mapping[str, bytes]
    ) -> None:
        guards = {p.user_id: (self._user_hash(p.user_id), markers.get(p.user_id)) for p in profiles}
        await self._profiles.set_many_guarded(
            {p.user_id: _encode(p) for p in profiles}, guards, guard_cache=self._markers
        )

    async def invalidate(self, user_ids: Sequence[str], *, strict: bool) -> None:
        marker = os.urandom(8)
        await self._markers.set_markers(
            {self._user_hash(user_id): marker for user_id in user_ids}, strict=strict
        )
        await self._profiles.delete(user_ids, strict=strict)


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
            "disliked": list(p.disliked),
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
        disliked=tuple(d.get("disliked", ())),  # absent: cached before dislikes existed
        counts=Counts(*d["counts"]),
    )
