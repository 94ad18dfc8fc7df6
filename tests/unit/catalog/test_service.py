"""CatalogService logic against hand-written fakes of its storage and caches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import TypeVar

import pytest

from magpie.runtime.errors import NotFound
from magpie.v1 import catalog_pb2 as pb
from services.catalog.service import CatalogService, ProductDraft, ProductQuery

Hook = Callable[[], Awaitable[None]]
V = TypeVar("V")


class FakeCache:
    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.after_set: Hook | None = None

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return {k: self.values[k] for k in keys if k in self.values}

    async def get_decoded(self, keys: Sequence[str], decode: Callable[[bytes], V]) -> dict[str, V]:
        return {k: decode(v) for k, v in (await self.get_many(keys)).items()}

    async def set_many(self, items: Mapping[str, bytes]) -> None:
        self.values.update(items)
        hook, self.after_set = self.after_set, None
        if hook is not None:
            await hook()

    async def set_markers(self, items: Mapping[str, bytes]) -> None:
        await self.set_many(items)

    async def set_many_guarded(
        self, items: Mapping[str, bytes], guards: Mapping[str, tuple[str, bytes | None]]
    ) -> None:
        await self.set_many(
            {k: v for k, v in items.items() if self.values.get(guards[k][0]) == guards[k][1]}
        )

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.values.pop(key, None)


class FakeStorage:
    def __init__(self) -> None:
        self.rows: dict[str, pb.Product] = {}
        self.fetches = 0
        self.during_fetch: Hook | None = None
        self.activity_windows: list[tuple[date, int]] = []

    async def upsert(self, drafts: Sequence[ProductDraft]) -> None:
        for d in drafts:
            old = self.rows.get(d.product_id)
            status = old.status if old else pb.PRODUCT_STATUS_ACTIVE
            self.rows[d.product_id] = pb.Product(
                product_id=d.product_id, title=d.title, status=status
            )

    async def fetch(
        self, product_ids: Sequence[str], stats_ids: Sequence[str], now: datetime
    ) -> tuple[dict[str, pb.Product], dict[str, pb.ProductStats]]:
        self.fetches += 1
        found: dict[str, pb.Product] = {}
        for i in product_ids:
            if i in self.rows:
                found[i] = pb.Product()
                found[i].CopyFrom(self.rows[i])
        stats = {i: pb.ProductStats(clicks_1d=len(i)) for i in stats_ids if i in self.rows}
        hook, self.during_fetch = self.during_fetch, None
        if hook is not None:  # a concurrent writer commits after this read
            await hook()
        return found, stats

    async def activity(self, product_id: str, first: date, days: int) -> list[pb.DailyActivity]:
        self.activity_windows.append((first, days))
        return [pb.DailyActivity(clicks=i) for i in range(days)] if product_id in self.rows else []

    async def list(
        self, query: ProductQuery, after_id: str, limit: int, now: datetime
    ) -> list[pb.Product]:
        return [self.rows[i] for i in sorted(self.rows) if i > after_id][:limit]

    async def set_status(self, product_ids: Sequence[str], status: int) -> set[str]:
        for i in product_ids:
            if i in self.rows:
                self.rows[i].status = status  # type: ignore[assignment]
        return {i for i in product_ids if i in self.rows}


def _service() -> tuple[CatalogService, FakeStorage, FakeCache]:
    storage, cache = FakeStorage(), FakeCache()
    service = CatalogService(storage, cache, FakeCache(), clock=lambda: datetime.now(UTC))
    return service, storage, cache


async def _titles(service: CatalogService, ids: Sequence[str]) -> list[str]:
    products, _ = await service.get(ids, include_inactive=False)
    return [p.title for p in products]


async def test_second_read_comes_from_the_cache() -> None:
    service, storage, _ = _service()
    await service.upsert([ProductDraft("a", "A"), ProductDraft("b", "B")])

    first = await _titles(service, ["a", "b", "a"])
    second = await _titles(service, ["b", "a"])

    assert (first, second) == (["A", "B", "A"], ["B", "A"])
    assert storage.fetches == 1


async def test_a_write_during_a_cache_miss_is_not_hidden_by_the_old_row() -> None:
    service, storage, _ = _service()
    await service.upsert([ProductDraft("a", "old")])

    async def write() -> None:
        await service.upsert([ProductDraft("a", "new")])

    storage.during_fetch = write
    during = await _titles(service, ["a"])
    after = await _titles(service, ["a"])

    assert during == ["old"]  # read before the write committed
    assert after == ["new"]


async def test_a_write_right_after_the_reader_cached_is_seen() -> None:
    service, _, cache = _service()
    await service.upsert([ProductDraft("a", "old")])

    async def write() -> None:
        await service.upsert([ProductDraft("a", "new")])

    cache.after_set = write
    await _titles(service, ["a"])

    assert await _titles(service, ["a"]) == ["new"]


async def test_status_change_invalidates_and_hides() -> None:
    service, _, _ = _service()
    await service.upsert([ProductDraft("a", "A")])
    await _titles(service, ["a"])

    outcomes = await service.set_status(["a", "zz", "a"], pb.PRODUCT_STATUS_HIDDEN)
    products, missing = await service.get(["a"], include_inactive=False)
    hidden, _ = await service.get(["a"], include_inactive=True)

    assert [(o.id, o.error) for o in outcomes] == [("a", ""), ("zz", "not found"), ("a", "")]
    assert (products, missing) == ([], ["a"])
    assert [p.status for p in hidden] == [pb.PRODUCT_STATUS_HIDDEN]


async def test_stats_are_attached_to_each_copy() -> None:
    service, _, _ = _service()
    await service.upsert([ProductDraft("ab", "AB")])

    products, _ = await service.get(["ab", "ab"], include_inactive=False)
    again, _ = await service.get(["ab"], include_inactive=False)

    assert [p.stats.clicks_1d for p in [*products, *again]] == [2, 2, 2]


async def test_upsert_rejects_bad_and_repeated_items_and_stores_the_rest() -> None:
    service, storage, _ = _service()

    outcomes = await service.upsert(
        [ProductDraft("a", "A"), ProductDraft("b", ""), ProductDraft("a", "A2")]
    )

    assert [(o.id, bool(o.error)) for o in outcomes] == [("a", False), ("b", True), ("a", True)]
    assert {i: p.title for i, p in storage.rows.items()} == {"a": "A"}


async def test_list_pages_end_with_an_empty_token() -> None:
    service, _, _ = _service()
    await service.upsert([ProductDraft(f"p{i}", "t") for i in range(5)])

    first = await service.list(ProductQuery(), 3, "")
    last = await service.list(ProductQuery(), 3, first.next_page_token)

    assert [p.product_id for p in first.products] == ["p0", "p1", "p2"]
    assert [p.product_id for p in last.products] == ["p3", "p4"]
    assert last.next_page_token == ""


async def test_activity_ends_today_in_utc_and_an_unknown_product_is_not_found() -> None:
    storage = FakeStorage()
    late_in_berlin = datetime(2024, 3, 2, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    service = CatalogService(storage, FakeCache(), FakeCache(), clock=lambda: late_in_berlin)
    await service.upsert([ProductDraft("a", "A")])

    days = await service.activity("a", 3)
    with pytest.raises(NotFound) as missing:
        await service.activity("ghost", 90)

    assert [d.clicks for d in days] == [0, 1, 2]
    # 2024-03-01 22:30 UTC: the window is Feb 28, Feb 29 (a leap year), Mar 1.
    assert storage.activity_windows == [(date(2024, 2, 28), 3), (date(2023, 12, 3), 90)]
    assert "ghost" in str(missing.value)
