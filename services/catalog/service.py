"""Catalog logic: per-product checks, cached batch reads, paging, status changes, daily
activity.

Reads return `magpie.v1.Product` messages: the catalog is a read-heavy feature
store whose cached form is the wire form, so a read served from Redis is parsed
once and never converted through another model.

Caching. Products (without stats) are cached under `p:<id>` for the settings'
cache TTL. Stats are cached apart (namespace `PRODUCT_STATS`, keyed by product
id) for only `STATS_CACHE_SECONDS`: the feedback consumer deletes them after
each fold it commits, but they are not guarded against the race below, and the
popularity in them was decayed to the time it was read; the short lifetime
bounds both. Every product write invalidates the products it changed after its
transaction committed, in this order: store a fresh random write marker
`w:<id>`, then delete `p:<id>`.

The read-through race (a reader fetches the old row, the writer commits and
invalidates, then the reader caches the old row) is closed with those markers:
a reader that missed `p:<id>` reads `w:<id>` before it queries PostgreSQL, then
caches what it fetched with one atomic Redis script that skips every product
whose marker changed meanwhile. Either the writer's marker lands first (the
reader's set is skipped) or the reader's set does (the writer's delete removes
it), so once a write is acknowledged no older version can be served. What
remains: when Redis fails during a writer's invalidation, a cached product can
be stale until its TTL ends.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Protocol, TypeVar

from magpie.runtime.errors import NotFound
from magpie.runtime.filters import ProductFilter
from magpie.runtime.paging import decode_page_token, filter_fingerprint, next_page
from magpie.runtime.products import category_problem, money_problems
from magpie.runtime.units import NANOS_PER_UNIT, SECONDS_PER_DAY
from magpie.runtime.validation import control_problem, id_problem
from magpie.v1 import catalog_pb2 as pb
from services.catalog import config

__all__ = [
    "ByteCache",
    "CatalogService",
    "CatalogStorage",
    "ItemOutcome",
    "Page",
    "Price",
    "ProductDraft",
    "ProductQuery",
    "product_problem",
]

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Price:
    currency_code: str
    units: int
    nanos: int

    @property
    def total_nanos(self) -> int:
        return self.units * NANOS_PER_UNIT + self.nanos


@dataclass(frozen=True, slots=True)
class ProductDraft:
    """A product as a caller asked to store it; checked by `product_problem`."""

    product_id: str
    title: str
    description: str = ""
    category_path: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    brand: str = ""
    price: Price | None = None
    rating: float = 0.0
    stock: int = 0
    created_at: datetime | None = None
    """None keeps the stored creation time (now, for a new product)."""
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    id: str
    error: str = ""


@dataclass(frozen=True, slots=True)
class ProductQuery:
    """What ListProducts selects; everything but the page position and size."""

    where: ProductFilter = field(default_factory=ProductFilter)
    in_stock_only: bool = False
    include_inactive: bool = False
    updated_since: datetime | None = None

    def fingerprint(self) -> str:
        """Stable digest of the query; lists are sets, so their order does not matter."""
        fields = asdict(self)
        fields.update(fields.pop("where"))
        fields["currency_code"] = fields.pop("currency")  # as before: earlier tokens stay valid
        canonical = {k: sorted(set(v)) if isinstance(v, tuple) else v for k, v in fields.items()}
        return filter_fingerprint(canonical)


@dataclass(frozen=True, slots=True)
class Page:
    products: list[pb.Product]
    next_page_token: str


class CatalogStorage(Protocol):
    async def upsert(self, drafts: Sequence[ProductDraft]) -> None: ...

    async def fetch(
        self, product_ids: Sequence[str], stats_ids: Sequence[str], now: datetime
    ) -> tuple[dict[str, pb.Product], dict[str, pb.ProductStats]]:
        """Products (without stats) and the stats of products, by id; absent ids are left out."""
        ...

    async def activity(self, product_id: str, first: date, days: int) -> list[pb.DailyActivity]:
        """The product's counts on each of `days` UTC days from `first`, oldest first, zeros
        where nothing happened; empty when the product does not exist."""
        ...

    async def list(
        self, query: ProductQuery, after_id: str, limit: int, now: datetime
    ) -> list[pb.Product]:
        """Up to `limit` matching products with stats, ordered by id, ids above `after_id`."""
        ...

    async def set_status(self, product_ids: Sequence[str], status: int) -> set[str]:
        """Sets the status of the products that exist; returns their ids."""
        ...


class ByteCache(Protocol):
    """The part of `magpie.runtime.cache.Cache` the catalog uses."""

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]: ...
    async def get_decoded(
        self, keys: Sequence[str], decode: Callable[[bytes], V]
    ) -> dict[str, V]: ...
    async def set_markers(self, items: Mapping[str, bytes]) -> None: ...
    async def set_many(self, items: Mapping[str, bytes]) -> None: ...
    async def set_many_guarded(
        self, items: Mapping[str, bytes], guards: Mapping[str, tuple[str, bytes | None]]
    ) -> None: ...
    async def delete(self, keys: Sequence[str]) -> None: ...


def _price_problem(price: Price) -> str | None:
    problems = money_problems(price.currency_code, price.units, price.nanos)
    return " ".join(problems[0]) if problems else None


def _first_problem(checks: Iterable[tuple[str, str | None]]) -> str | None:
    for name, problem in checks:
        if problem is not None:
            return f"{name}: {problem}"
    return None


def _text_problem(value: str, most: int, *, multiline: bool = False) -> str | None:
    if len(value) > most:
        return f"must be at most {most} characters"
    return control_problem(value, multiline=multiline)


def _tags_problem(tags: Sequence[str]) -> str | None:
    if len(tags) > config.MAX_TAGS:
        return f"must have at most {config.MAX_TAGS} entries"
    for i, tag in enumerate(tags):
        if not tag or len(tag) > config.MAX_TEXT_LENGTH:
            return f"[{i}] must be 1-{config.MAX_TEXT_LENGTH} characters"
        if (problem := control_problem(tag)) is not None:
            return f"[{i}] {problem}"
    return None


def _attributes_problem(attributes: Mapping[str, str]) -> str | None:
    if len(attributes) > config.MAX_ATTRIBUTES:
        return f"must have at most {config.MAX_ATTRIBUTES} entries"
    for key, value in attributes.items():
        if not key or len(key) > config.MAX_TEXT_LENGTH:
            return f"keys must be 1-{config.MAX_TEXT_LENGTH} characters, got {key!r}"
        if (problem := control_problem(key)) is not None:
            return f"key {key!r} {problem}"
        problem = _text_problem(value, config.MAX_ATTRIBUTE_VALUE_LENGTH, multiline=True)
        if problem is not None:
            return f"[{key!r}] {problem}"
    return None


def _category_path_problem(levels: Sequence[str]) -> str | None:
    if len(levels) > config.MAX_CATEGORY_LEVELS:
        return f"must have at most {config.MAX_CATEGORY_LEVELS} levels"
    for i, level in enumerate(levels):
        problem = category_problem(level)
        if problem is not None:
            return f"[{i}] {problem}"
    return None


def product_problem(draft: ProductDraft) -> str | None:
    """Why the product cannot be stored, as "field: reason", or None."""
    return _first_problem(
        [
            ("product_id", id_problem(draft.product_id)),
            ("title", "must not be blank" if not draft.title.strip() else None),
            ("title", _text_problem(draft.title, config.MAX_TITLE_LENGTH)),
            (
                "description",
                _text_problem(draft.description, config.MAX_DESCRIPTION_LENGTH, multiline=True),
            ),
            ("category_path", _category_path_problem(draft.category_path)),
            ("tags", _tags_problem(draft.tags)),
            ("brand", _text_problem(draft.brand, config.MAX_TEXT_LENGTH)),
            ("price", None if draft.price is None else _price_problem(draft.price)),
            ("rating", None if 0 <= draft.rating <= 5 else "must be between 0 and 5"),
            ("stock", None if draft.stock >= 0 else "must not be negative"),
            ("attributes", _attributes_problem(draft.attributes)),
        ]
    )


def decayed_popularity(score: float, as_of: datetime, now: datetime) -> float:
    """`score` (valid at `as_of`) decayed with the popularity half-life to `now`."""
    age_days = (now - as_of).total_seconds() / SECONDS_PER_DAY
    return score * math.pow(0.5, age_days / config.POPULARITY_HALF_LIFE_DAYS)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _product_key(product_id: str) -> str:
    return "p:" + product_id


def _marker_key(product_id: str) -> str:
    return "w:" + product_id


class CatalogService:
    def __init__(
        self,
        storage: CatalogStorage,
        products_cache: ByteCache,
        stats_cache: ByteCache,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._storage = storage
        self._products_cache = products_cache
        self._stats_cache = stats_cache
        self._clock = clock

    async def upsert(self, drafts: Sequence[ProductDraft]) -> list[ItemOutcome]:
        """Stores every acceptable product; the others are reported and skipped."""
        outcomes: list[ItemOutcome] = []
        accepted: dict[str, ProductDraft] = {}
        first_index: dict[str, int] = {}
        for i, draft in enumerate(drafts):
            problem = product_problem(draft)
            if problem is None and draft.product_id in first_index:
                problem = f"product_id: duplicate of products[{first_index[draft.product_id]}]"
            first_index.setdefault(draft.product_id, i)
            if problem is None:
                accepted[draft.product_id] = draft
            outcomes.append(ItemOutcome(draft.product_id, problem or ""))
        if accepted:
            await self._storage.upsert(list(accepted.values()))
            await self._invalidate(list(accepted))
        return outcomes

    async def set_status(self, product_ids: Sequence[str], status: int) -> list[ItemOutcome]:
        unique = list(dict.fromkeys(product_ids))
        found = await self._storage.set_status(unique, status)
        await self._invalidate([i for i in unique if i in found])
        return [ItemOutcome(i, "" if i in found else "not found") for i in product_ids]

    async def get(
        self, product_ids: Sequence[str], *, include_inactive: bool, with_stats: bool = True
    ) -> tuple[list[pb.Product], list[str]]:
        """Products in request order (repeated ids repeat) and the distinct missing ids;
        without stats (empty) unless `with_stats`."""
        unique = list(dict.fromkeys(product_ids))
        products, stats = await self._read_through(unique, with_stats)
        found: list[pb.Product] = []
        missing: dict[str, None] = {}
        for product_id in product_ids:
            product = products.get(product_id)
            if product is None or not (
                include_inactive or product.status == pb.PRODUCT_STATUS_ACTIVE
            ):
                missing[product_id] = None
                continue
            if with_stats:
                product.stats.CopyFrom(stats.get(product_id, pb.ProductStats()))
            found.append(product)
        return found, list(missing)

    async def activity(self, product_id: str, days: int) -> list[pb.DailyActivity]:
        """The product's counts per UTC day, the last `days` days up to today; NotFound
        when there is no such product (whatever its status)."""
        today = self._clock().astimezone(UTC).date()
        found = await self._storage.activity(product_id, today - timedelta(days=days - 1), days)
        if not found:
            raise NotFound(f"product {product_id!r} not found")
        return found

    async def list(self, query: ProductQuery, page_size: int, page_token: str) -> Page:
        fingerprint = query.fingerprint()
        after_id = decode_page_token(page_token, fingerprint)
        rows = await self._storage.list(query, after_id, page_size + 1, self._clock())
        return Page(*next_page(rows, page_size, lambda p: p.product_id, fingerprint))

    async def _invalidate(self, product_ids: Sequence[str]) -> None:
        """After a commit: new write markers first, then drop the cached products."""
        marker = os.urandom(8)
        await self._products_cache.set_markers({_marker_key(i): marker for i in product_ids})
        await self._products_cache.delete([_product_key(i) for i in product_ids])

    async def _read_through(
        self, product_ids: Sequence[str], with_stats: bool = True
    ) -> tuple[dict[str, pb.Product], dict[str, pb.ProductStats]]:
        cached, stats = await asyncio.gather(
            self._products_cache.get_decoded(
                [_product_key(i) for i in product_ids], pb.Product.FromString
            ),
            self._stats_cache.get_decoded(
                product_ids if with_stats else [], pb.ProductStats.FromString
            ),
        )
        products = {i: cached[_product_key(i)] for i in product_ids if _product_key(i) in cached}
        need_products = [i for i in product_ids if i not in products]
        need_stats = [i for i in product_ids if i not in stats] if with_stats else []
        if not need_products and not need_stats:
            return products, stats

        markers = await self._products_cache.get_many([_marker_key(i) for i in need_products])
        fetched, fetched_stats = await self._storage.fetch(need_products, need_stats, self._clock())
        products.update(fetched)
        for product_id in need_stats:
            if product_id in products:
                stats[product_id] = fetched_stats.get(product_id, pb.ProductStats())
        await asyncio.gather(
            self._stats_cache.set_many(
                {i: stats[i].SerializeToString() for i in need_stats if i in stats}
            ),
            self._cache_fetched(fetched, markers),
        )
        return products, stats

    async def _cache_fetched(
        self, fetched: Mapping[str, pb.Product], markers_before: Mapping[str, bytes]
    ) -> None:
        """Caches products read from PostgreSQL unless a write invalidated them meanwhile."""
        guards = {
            _product_key(i): (_marker_key(i), markers_before.get(_marker_key(i))) for i in fetched
        }
        await self._products_cache.set_many_guarded(
            {_product_key(i): p.SerializeToString() for i, p in fetched.items()}, guards
        )
