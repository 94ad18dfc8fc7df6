"""Reads what the platform has stored (catalog, users, events) back as a `Dataset`.

This is what retraining learns from: the same rows the services serve, read
in one pass in (user, time, arrival) order, less the events (and attributes) of
users who refused analytics use of their events (magpie.v1.Consent.analytics
false; consent not stated is no refusal). A like is read as a click (interest in the
product; the models do not weigh kinds); dislikes and comments are never read.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import psycopg2

from magpie.datasets.schema import Dataset, EventKind, Interaction, Item, User
from magpie.runtime.units import NANOS_PER_UNIT

__all__ = ["ANALYTICS_ALLOWED", "POSITIVE_EVENT_TYPES", "POSITIVE_KINDS", "read_dataset"]

_KIND_BY_NUMBER = {
    1: EventKind.IMPRESSION,
    2: EventKind.CLICK,
    3: EventKind.ADD_TO_CART,
    4: EventKind.PURCHASE,
    5: EventKind.RATING,
    6: EventKind.CLICK,  # magpie.v1.EVENT_TYPE_LIKE
}
"""The kind each magpie.v1.EventType number becomes; numbers not listed are never read."""
_AGE_BANDS = {
    1: "under_18",
    2: "18_24",
    3: "25_34",
    4: "35_44",
    5: "45_54",
    6: "55_64",
    7: "65_plus",
}
_GENDERS = {1: "female", 2: "male", 3: "other"}

ANALYTICS_ALLOWED = """NOT EXISTS (
    SELECT 1 FROM users AS refused
    WHERE refused.user_id = events.user_id AND refused.consent_analytics IS FALSE)"""
"""SQL condition on a row of `events`: its user has not refused analytics use of events."""

POSITIVE_KINDS = frozenset(
    {EventKind.CLICK, EventKind.ADD_TO_CART, EventKind.PURCHASE, EventKind.RATING}
)
"""Interactions that express interest; impressions alone do not."""
POSITIVE_EVENT_TYPES = tuple(sorted(n for n, k in _KIND_BY_NUMBER.items() if k in POSITIVE_KINDS))
"""The magpie.v1.EventType numbers read as POSITIVE_KINDS (a like is a click; dislikes and
comments are not interest)."""


def _item(row: tuple[Any, ...]) -> Item:
    pid, title, description, path, tags, brand, currency, price_nanos, rating, stock, created = row
    return Item(
        item_id=pid,
        title=title,
        description=description,
        category_path=tuple(path.split(" > ")) if path else (),
        brand=brand,
        tags=tuple(tags),
        price=price_nanos / NANOS_PER_UNIT,
        currency=currency,
        stock=stock,
        rating=rating,
        created_at=created.timestamp(),
    )


def read_dataset(
    database_url: str,
    *,
    name: str = "warehouse",
    kinds: Collection[EventKind] = POSITIVE_KINDS,
    through_seq: int | None = None,
) -> Dataset:
    """Every product (hidden ones too: history refers to them), user, and event of `kinds`
    (only those stored up to event sequence number ``through_seq``, when given: a snapshot
    that later events do not change)."""
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                """
                SELECT product_id, title, description, category_path, tags, brand,
                       currency_code, price_nanos, rating, stock, created_at
                FROM products ORDER BY product_id
                """
            )
            items = [_item(row) for row in cur.fetchall()]
            cur.execute(
                "SELECT user_id, age_band, gender, region, segments FROM users"
                " WHERE consent_analytics IS NOT FALSE"
            )
            users = [
                User(uid, _AGE_BANDS.get(age, ""), _GENDERS.get(gender, ""), region, tuple(seg))
                for uid, age, gender, region, seg in cur.fetchall()
            ]
            cur.execute(
                f"""
                SELECT user_id, product_id, event_type, extract(epoch FROM occurred_at),
                       rating, session_id
                FROM events
                WHERE event_type = ANY(%s) AND (%s::bigint IS NULL OR seq <= %s::bigint)
                  AND {ANALYTICS_ALLOWED}
                ORDER BY user_id, occurred_at, seq
                """,
                (
                    sorted(n for n, kind in _KIND_BY_NUMBER.items() if kind in kinds),
                    through_seq,
                    through_seq,
                ),
            )
            interactions = [
                Interaction(uid, pid, _KIND_BY_NUMBER[kind], float(ts), rating, session)
                for uid, pid, kind, ts, rating, session in cur.fetchall()
            ]
    finally:
        conn.close()
    known = {u.user_id for u in users}
    users += [
        User(uid) for uid in dict.fromkeys(i.user_id for i in interactions) if uid not in known
    ]
    return Dataset(name, items, users, interactions)
