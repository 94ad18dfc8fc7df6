"""What retrieval must know of every product to exclude it, kept in process.

Checking the few hundred proposed candidates of each request against PostgreSQL
cost two round trips per call; instead the table mirrors the facts the rules need
(available, category, brand, price) and follows `products.updated_at`
incrementally every few seconds. A product hidden or sold out therefore leaves
retrieval within `config.PRODUCTS_REFRESH_SECONDS`; the ranking service checks
the final slice against the catalog again before answering.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from magpie.runtime.filters import CATEGORY_SEPARATOR, ProductFilter, matches

__all__ = ["ProductFacts", "ProductTable"]

_OVERLAP = datetime.timedelta(seconds=10)
"""How long a writing transaction may stay open: `updated_at` is its start time, so a row
it commits may carry a timestamp older than rows read before it committed."""


@dataclass(frozen=True, slots=True)
class ProductFacts:
    available: bool
    """Active and in stock."""
    category_path: str
    brand: str
    currency: str
    price_nanos: int

    @property
    def top_category(self) -> str:
        return self.category_path.split(CATEGORY_SEPARATOR, 1)[0]


Row = tuple[str, bool, str, str, str, int, datetime.datetime]
"""product_id, available, category_path, brand, currency_code, price_nanos, updated_at."""


class ProductTable:
    def __init__(self) -> None:
        self._facts: dict[str, ProductFacts] = {}
        self._available: set[str] = set()
        """The products whose facts say available: a set for C-speed checks of a request's
        several hundred candidates."""
        self._newest: datetime.datetime | None = None
        self._read_at: datetime.datetime | None = None

    @property
    def read_since(self) -> datetime.datetime | None:
        """Where the next incremental read starts (None: read everything).

        A row the last read could not see was written by a transaction still open then,
        so its `updated_at` is later than that read's time less `_OVERLAP`; rows changed
        after the newest one seen are read too. Re-reading from the newest change less
        the overlap instead would re-read a bulk load's last seconds every refresh, for
        as long as nothing newer is written.
        """
        if self._newest is None or self._read_at is None:
            return None
        return min(self._newest, self._read_at - _OVERLAP)

    def __len__(self) -> int:
        return len(self._facts)

    def apply(self, rows: Iterable[Row], read_at: datetime.datetime) -> None:
        """Applies the rows of a read that started at ``read_at`` (the database's clock)."""
        self._read_at = read_at
        for product_id, available, path, brand, currency, price, updated_at in rows:
            self._facts[product_id] = ProductFacts(available, path, brand, currency, price)
            if available:
                self._available.add(product_id)
            else:
                self._available.discard(product_id)
            if self._newest is None or updated_at > self._newest:
                self._newest = updated_at

    def eligible(
        self, product_ids: Sequence[str], where: ProductFilter, excluded: Sequence[str]
    ) -> list[str]:
        """The products that are available, not excluded and pass the filter, in the order
        of ``product_ids``."""
        keep = self._available.intersection(product_ids).difference(excluded)
        candidates = list(filter(keep.__contains__, product_ids))  # set algebra and filter in C
        if not where.restricts_attributes:
            return candidates
        facts = self._facts
        return [
            p
            for p in candidates
            if matches(where, (f := facts[p]).category_path, f.brand, f.currency, f.price_nanos)
        ]

    def top_categories(self, product_ids: Sequence[str]) -> dict[str, str]:
        facts = self._facts
        return {p: f.top_category for p in product_ids if (f := facts.get(p)) is not None}
