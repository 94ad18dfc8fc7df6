"""Product facts the ranking service fetched lately, answered from memory for a while.

Recommend needs the facts of its best-scored candidates (about 60), and under load the
same products come back many times a second; each fetch is a gRPC hop to the catalog
(about a fifth of a Recommend's CPU on the whole path). A fetched product is kept for
`config.PRODUCT_CACHE_SECONDS`. The absence of one the catalog did not return (inactive
or gone) is not kept: retrieval rarely proposes such a product, and a product activated
again must not stay hidden for that long.

Staleness stays bounded where it matters: retrieval's eligibility check (its product
table, refreshed every 2 s) drops a product gone inactive, out of stock or outside the
request's filter before ranking sees it, so what the cache can hold back is a title,
category or price change for at most that many seconds. Rank ranks the caller's own
product ids, which retrieval never checked: it always reads the catalog.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from services.ranking.domain import Product

__all__ = ["ProductCache"]


class ProductCache:
    def __init__(
        self, seconds: float, capacity: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._seconds = seconds
        self._capacity = capacity
        self._clock = clock
        self._entries: dict[str, tuple[float, Product]] = {}
        """Product id -> (expiry, product), in expiry order."""

    def split(self, product_ids: Iterable[str]) -> tuple[dict[str, Product], list[str]]:
        """The fresh cached products among ``product_ids``, and the ids to fetch."""
        now = self._clock()
        found: dict[str, Product] = {}
        missing: list[str] = []
        for product_id in product_ids:
            entry = self._entries.get(product_id)
            if entry is None or entry[0] <= now:
                missing.append(product_id)
            else:
                found[product_id] = entry[1]
        return found, missing

    def store(self, fetched: Mapping[str, Product]) -> None:
        """Keeps the products a fetch returned. Drops expired entries, and the oldest
        beyond the capacity."""
        now = self._clock()
        entries = self._entries
        for product_id, product in fetched.items():
            entries.pop(product_id, None)  # re-inserted last: the dict stays in expiry order
            entries[product_id] = (now + self._seconds, product)
        while entries:
            oldest = next(iter(entries))
            if len(entries) <= self._capacity and entries[oldest][0] > now:
                break
            del entries[oldest]
