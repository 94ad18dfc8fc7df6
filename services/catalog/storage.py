"""PostgreSQL storage of the catalog, and reads of the derived behaviour tables.

Behaviour statistics come from `product_daily_counts` and `product_popularity`
(migration 0002), which the event consumer fills; this module only reads them.
Windows are whole UTC days counted back from today, today included: the 1-day
window is today, the 7-day window today and the 6 days before. A product's activity
lists every day of its window, days without a counter row as zeros. "Views" are
product page opens, that is clicks: an impression (the product was merely
shown in a list) is not a view, so `views_*` equal `clicks_*`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import Json, execute_values

from magpie.runtime.db import Connection, Database
from magpie.runtime.paging import like_escape
from magpie.runtime.products import CATEGORY_SEPARATOR
from magpie.runtime.units import NANOS_PER_UNIT
from magpie.v1 import catalog_pb2 as pb
from services.catalog.service import ProductDraft, ProductQuery
from services.catalog.service import decayed_popularity as _decayed

__all__ = ["CatalogStore", "like_prefix"]


_COLUMNS = """
    product_id, title, description, category_path, tags, brand, currency_code, price_nanos,
    rating, stock, status, attributes,
    (extract(epoch FROM created_at) * 1000000)::bigint,
    (extract(epoch FROM updated_at) * 1000000)::bigint
"""

_UPSERT = """
    WITH input (product_id, title, description, category_path, tags, brand, currency_code,
                price_nanos, rating, stock, attributes, created_at) AS (VALUES %s)
    INSERT INTO products (product_id, title, description, category_path, tags, brand,
                          currency_code, price_nanos, rating, stock, attributes, created_at)
    SELECT i.product_id, i.title, i.description, i.category_path, i.tags, i.brand,
           i.currency_code, i.price_nanos, i.rating, i.stock, i.attributes,
           COALESCE(i.created_at, old.created_at, now())
    FROM input i LEFT JOIN products old ON old.product_id = i.product_id
    ORDER BY i.product_id
    ON CONFLICT (product_id) DO UPDATE SET
        title = EXCLUDED.title, description = EXCLUDED.description,
        category_path = EXCLUDED.category_path, tags = EXCLUDED.tags, brand = EXCLUDED.brand,
        currency_code = EXCLUDED.currency_code, price_nanos = EXCLUDED.price_nanos,
        rating = EXCLUDED.rating, stock = EXCLUDED.stock, attributes = EXCLUDED.attributes,
        created_at = EXCLUDED.created_at, updated_at = now()
"""
_UPSERT_ROW = (
    "(%s, %s, %s, %s, %s::text[], %s, %s, %s::bigint, %s::real, %s::bigint, %s::jsonb,"
    " %s::timestamptz)"
)

_COUNTS = """
    SELECT product_id,
           COALESCE(sum(clicks) FILTER (WHERE day >= %(d1)s), 0)::bigint,
           COALESCE(sum(clicks) FILTER (WHERE day >= %(d7)s), 0)::bigint,
           COALESCE(sum(clicks), 0)::bigint,
           COALESCE(sum(purchases) FILTER (WHERE day >= %(d1)s), 0)::bigint,
           COALESCE(sum(purchases) FILTER (WHERE day >= %(d7)s), 0)::bigint,
           COALESCE(sum(purchases), 0)::bigint
    FROM product_daily_counts
    WHERE product_id = ANY(%(ids)s) AND day BETWEEN %(d30)s AND %(d1)s
    GROUP BY product_id
"""
_ACTIVITY = """
    WITH days AS (SELECT %(first)s::date + n AS day FROM generate_series(0, %(days)s - 1) AS n)
    SELECT days.day, COALESCE(c.impressions, 0), COALESCE(c.clicks, 0),
           COALESCE(c.add_to_carts, 0), COALESCE(c.purchases, 0)
    FROM products p CROSS JOIN days
    LEFT JOIN product_daily_counts c ON c.product_id = p.product_id AND c.day = days.day
    WHERE p.product_id = %(id)s
    ORDER BY days.day
"""
"""One row per day, or none when the product does not exist (whatever its status)."""
_POPULARITY = "SELECT product_id, score, as_of FROM product_popularity WHERE product_id = ANY(%s)"


def like_prefix(path: str) -> str:
    """LIKE pattern matching the categories strictly below `path` (LIKE's `\\` escape)."""
    return like_escape(path) + CATEGORY_SEPARATOR + "%"


def _product_from_row(row: tuple[Any, ...]) -> pb.Product:
    (product_id, title, description, category, tags, brand, currency, price_nanos) = row[:8]
    (rating, stock, status, attributes, created_us, updated_us) = row[8:]
    product = pb.Product(
        product_id=product_id,
        title=title,
        description=description,
        category_path=category.split(CATEGORY_SEPARATOR) if category else (),
        tags=tags,
        brand=brand,
        rating=rating,
        stock=stock,
        status=status,
        attributes=attributes,
    )
    if currency:
        units, nanos = divmod(price_nanos, NANOS_PER_UNIT)
        product.price.currency_code = currency
        product.price.units = units
        product.price.nanos = nanos
    product.created_at.FromMicroseconds(created_us)
    product.updated_at.FromMicroseconds(updated_us)
    return product


def _draft_row(d: ProductDraft) -> tuple[Any, ...]:
    return (
        d.product_id,
        d.title,
        d.description,
        CATEGORY_SEPARATOR.join(d.category_path),
        list(d.tags),
        d.brand,
        d.price.currency_code if d.price else "",
        d.price.total_nanos if d.price else 0,
        d.rating,
        d.stock,
        Json(dict(d.attributes)),
        d.created_at,
    )


def _read_stats(
    cur: Cursor, product_ids: Sequence[str], now: datetime
) -> dict[str, pb.ProductStats]:
    if not product_ids:
        return {}
    today = now.astimezone(UTC).date()
    ids = list(product_ids)
    cur.execute(
        _COUNTS,
        {
            "ids": ids,
            "d1": today,
            "d7": today - timedelta(days=6),
            "d30": today - timedelta(days=29),
        },
    )
    stats = {
        row[0]: pb.ProductStats(
            views_1d=row[1],
            views_7d=row[2],
            views_30d=row[3],
            clicks_1d=row[1],
            clicks_7d=row[2],
            clicks_30d=row[3],
            purchases_1d=row[4],
            purchases_7d=row[5],
            purchases_30d=row[6],
        )
        for row in cur.fetchall()
    }
    cur.execute(_POPULARITY, (ids,))
    for product_id, score, as_of in cur.fetchall():
        stats.setdefault(product_id, pb.ProductStats()).popularity = _decayed(score, as_of, now)
    return stats


def _daily_activity(row: tuple[Any, ...]) -> pb.DailyActivity:
    day, impressions, clicks, add_to_carts, purchases = row
    activity = pb.DailyActivity(
        impressions=impressions, clicks=clicks, add_to_carts=add_to_carts, purchases=purchases
    )
    activity.day.FromDatetime(datetime.combine(day, time(), UTC))
    return activity


def _where(query: ProductQuery, after_id: str) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []

    def add(clause: str, *values: Any) -> None:
        clauses.append(clause)
        params.extend(values)

    if after_id:
        add("product_id > %s", after_id)
    if not query.include_inactive:
        add("status = %s", pb.PRODUCT_STATUS_ACTIVE)
    if query.in_stock_only:
        add("stock > 0")
    where = query.where
    if where.category_prefixes:
        alternatives = " OR ".join(
            ["category_path = %s OR category_path LIKE %s"] * len(where.category_prefixes)
        )
        add(
            f"({alternatives})",
            *[v for p in where.category_prefixes for v in (p, like_prefix(p))],
        )
    if where.currency:
        add("currency_code = %s", where.currency)
    if where.min_price_nanos is not None:
        add("price_nanos >= %s", where.min_price_nanos)
    if where.max_price_nanos is not None:
        add("price_nanos <= %s", where.max_price_nanos)
    if where.brands:
        add("brand = ANY(%s)", list(where.brands))
    if where.exclude_product_ids:
        add("NOT (product_id = ANY(%s))", list(where.exclude_product_ids))
    if query.updated_since is not None:
        add("updated_at >= %s", query.updated_since)
    return (" AND ".join(clauses) or "true"), params


class CatalogStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert(self, drafts: Sequence[ProductDraft]) -> None:
        rows = [_draft_row(d) for d in drafts]

        def write(conn: Connection) -> None:
            with conn.cursor() as cur:
                execute_values(cur, _UPSERT, rows, template=_UPSERT_ROW, page_size=len(rows))

        await self._db.run(write)

    async def fetch(
        self, product_ids: Sequence[str], stats_ids: Sequence[str], now: datetime
    ) -> tuple[dict[str, pb.Product], dict[str, pb.ProductStats]]:
        def read(conn: Connection) -> tuple[dict[str, pb.Product], dict[str, pb.ProductStats]]:
            products: dict[str, pb.Product] = {}
            with conn.cursor() as cur:
                if product_ids:
                    cur.execute(
                        f"SELECT {_COLUMNS} FROM products WHERE product_id = ANY(%s)",
                        (list(product_ids),),
                    )
                    products = {row[0]: _product_from_row(row) for row in cur.fetchall()}
                return products, _read_stats(cur, stats_ids, now)

        return await self._db.run(read)

    async def activity(self, product_id: str, first: date, days: int) -> list[pb.DailyActivity]:
        def read(conn: Connection) -> list[pb.DailyActivity]:
            with conn.cursor() as cur:
                cur.execute(_ACTIVITY, {"id": product_id, "first": first, "days": days})
                return [_daily_activity(row) for row in cur.fetchall()]

        return await self._db.run(read)

    async def list(
        self, query: ProductQuery, after_id: str, limit: int, now: datetime
    ) -> list[pb.Product]:
        where, params = _where(query, after_id)

        def read(conn: Connection) -> list[pb.Product]:
            with conn.cursor() as cur:
                cur.execute(
                    f"SELECT {_COLUMNS} FROM products WHERE {where} ORDER BY product_id LIMIT %s",
                    [*params, limit],
                )
                products = [_product_from_row(row) for row in cur.fetchall()]
                stats = _read_stats(cur, [p.product_id for p in products], now)
            for product in products:
                if product.product_id in stats:
                    product.stats.CopyFrom(stats[product.product_id])
            return products

        return await self._db.run(read)

    async def set_status(self, product_ids: Sequence[str], status: int) -> set[str]:
        def write(conn: Connection) -> set[str]:
            with conn.cursor() as cur:
                cur.execute(
                    """
                    UPDATE products SET status = %(status)s,
                        updated_at = CASE WHEN status = %(status)s THEN updated_at ELSE now() END
                    WHERE product_id IN (  -- locked in id order, like upserts: no deadlocks
                        SELECT product_id FROM products WHERE product_id = ANY(%(ids)s)
                        ORDER BY product_id FOR UPDATE)
                    RETURNING product_id
                    """,
                    {"status": status, "ids": list(product_ids)},
                )
                return {row[0] for row in cur.fetchall()}

        return await self._db.run(write)
