"""PostgreSQL reads of the retrieval service: registry, popularity, product eligibility."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from magpie.modelstore import registry
from magpie.runtime.db import Connection, Database
from magpie.runtime.decay import decay_sql
from magpie.runtime.filters import ProductFilter
from magpie.runtime.heap import freeze_long_lived
from magpie.runtime.units import SECONDS_PER_DAY
from magpie.v1.catalog_pb2 import PRODUCT_STATUS_ACTIVE
from services.retrieval import config
from services.retrieval.products import ProductTable, Row
from services.retrieval.service import Popularity, Ranked
from services.retrieval.snapshots import Refreshed

__all__ = ["RetrievalStore"]

_POPULARITY_SQL = f"""
    WITH scored AS (
        SELECT pp.product_id, split_part(p.category_path, ' > ', 1) AS category,
               pp.score * {decay_sql("now() - pp.as_of", "%(half_life)s")} AS score
        FROM product_popularity pp JOIN products p USING (product_id)
        WHERE p.status = %(active)s AND p.stock > 0
    ), ranked AS (
        SELECT product_id, category, score,
               row_number() OVER (PARTITION BY category ORDER BY score DESC, product_id)
                   AS category_rank,
               row_number() OVER (ORDER BY score DESC, product_id) AS overall_rank
        FROM scored
    )
    SELECT product_id, category, score, overall_rank <= %(pool)s
    FROM ranked WHERE category_rank <= %(pool)s OR overall_rank <= %(pool)s
    ORDER BY score DESC, product_id
"""

_PRODUCTS_SQL = """
    SELECT product_id, status = %(active)s AND stock > 0, category_path, brand,
           currency_code, price_nanos, updated_at
    FROM products WHERE %(since)s::timestamptz IS NULL OR updated_at >= %(since)s
"""


class RetrievalStore:
    def __init__(self, db: Database, model_name: str) -> None:
        self._db = db
        self._model_name = model_name
        self._table = ProductTable()
        self._products = Refreshed(self._read_products, config.PRODUCTS_REFRESH_SECONDS)

    async def _read_products(self) -> ProductTable:
        """Applies the product rows changed since the last read to the table."""
        params = {"active": PRODUCT_STATUS_ACTIVE, "since": self._table.read_since}

        def read(conn: Connection) -> tuple[list[Row], datetime]:
            with conn.cursor() as cur:
                cur.execute("SELECT now()")  # before the rows: a conservative read time
                (read_at,) = cur.fetchone()  # type: ignore[misc]
                cur.execute(_PRODUCTS_SQL, params)
                return cur.fetchall(), read_at

        rows, read_at = await self._db.run(read)
        self._table.apply(rows, read_at)
        if len(rows) >= config.FREEZE_AFTER_PRODUCT_ROWS:
            freeze_long_lived()
        return self._table

    async def champion(self) -> int | None:
        """The version the registry's champion alias names (None when there is none)."""
        aliases = await self._db.run(lambda conn: registry.aliases(conn, self._model_name))
        return aliases.get("champion")

    async def popularity(self) -> Popularity:
        def read(conn: Connection) -> list[tuple[str, str, float, bool]]:
            with conn.cursor() as cur:
                cur.execute(
                    _POPULARITY_SQL,
                    {
                        "half_life": config.POPULARITY_HALF_LIFE_DAYS * SECONDS_PER_DAY,
                        "active": PRODUCT_STATUS_ACTIVE,
                        "pool": config.POPULAR_POOL,
                    },
                )
                return cur.fetchall()

        rows = await self._db.run(read)
        overall = [(p, s) for p, _, s, top in rows if top]
        grouped: dict[str, list[tuple[str, float]]] = {}
        for product_id, category, score, _ in rows:
            grouped.setdefault(category, []).append((product_id, score))
        by_category = {c: _ranked(items) for c, items in grouped.items() if c}
        return Popularity(overall=_ranked(overall), by_category=by_category)

    async def top_categories(self, product_ids: Sequence[str]) -> dict[str, str]:
        """Top-level category of each known product."""
        return (await self._products.get()).top_categories(product_ids)

    async def eligible(
        self, product_ids: Sequence[str], where: ProductFilter, excluded: Sequence[str]
    ) -> list[str]:
        """The products that are active, in stock, not excluded and pass the filter."""
        return (await self._products.get()).eligible(product_ids, where, excluded)


def _ranked(items: list[tuple[str, float]]) -> Ranked:
    return Ranked(
        np.array([p for p, _ in items], dtype=object),
        np.array([s for _, s in items], dtype=np.float32),
    )
