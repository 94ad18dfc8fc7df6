"""Profile logic with hand-written storage and cache fakes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from services.profiles.service import (
    Affinity,
    Attributes,
    Interaction,
    ProfileService,
    StoredProfile,
    Window,
    category_affinities,
)

T = datetime(2024, 1, 1, tzinfo=UTC)


class FakeStorage:
    def __init__(self, profiles: dict[str, StoredProfile]) -> None:
        self.profiles = profiles
        self.reads: list[list[str]] = []

    async def upsert(self, users: Sequence[tuple[str, Attributes]]) -> None:
        for user_id, attributes in users:
            self.profiles[user_id] = StoredProfile(user_id, attributes)

    async def get_many(self, user_ids: Sequence[str], history: int) -> dict[str, StoredProfile]:
        self.reads.append(list(user_ids))
        return {u: self.profiles[u] for u in user_ids if u in self.profiles}

    async def delete(self, user_id: str) -> tuple[bool, int]:
        return self.profiles.pop(user_id, None) is not None, 0


class FakeCache:
    def __init__(self) -> None:
        self.entries: dict[str, StoredProfile] = {}

    async def get_many(self, user_ids: Sequence[str]) -> dict[str, StoredProfile]:
        return {u: self.entries[u] for u in user_ids if u in self.entries}

    async def set_many(self, profiles: Sequence[StoredProfile]) -> None:
        self.entries.update((p.user_id, p) for p in profiles)

    async def delete(self, user_ids: Sequence[str]) -> None:
        for user_id in user_ids:
            self.entries.pop(user_id, None)


def test_affinities_are_shares_per_window() -> None:
    affinities = category_affinities([("Books", 1.0, 3.0, 3.0), ("Garden", 0.0, 1.0, 5.0)])

    assert affinities == (
        Affinity("Books", Window.LAST_7D, 1.0),
        Affinity("Books", Window.LAST_30D, 0.75),
        Affinity("Garden", Window.LAST_30D, 0.25),
        Affinity("Garden", Window.ALL_TIME, 0.625),
        Affinity("Books", Window.ALL_TIME, 0.375),
    )


def test_no_weight_means_no_affinities() -> None:
    assert category_affinities([("Books", 0.0, 0.0, 0.0)]) == ()


async def test_unknown_users_are_cold_and_cached_and_order_is_kept() -> None:
    storage = FakeStorage({"a": StoredProfile("a")})
    service = ProfileService(storage, FakeCache())

    first = await service.get_many(["ghost", "a", "ghost"])
    second = await service.get_many(["a", "ghost"])

    assert [(p.user_id, p.known) for p in first] == [
        ("ghost", False),
        ("a", True),
        ("ghost", False),
    ]
    assert [p.user_id for p in second] == ["a", "ghost"]
    assert storage.reads == [["ghost", "a"]]


@pytest.mark.parametrize(("limit", "expected"), [(0, 50), (3, 3), (200, 120)])
async def test_history_is_trimmed_to_the_limit(limit: int, expected: int) -> None:
    recent = tuple(Interaction(f"p{i}", 2, T) for i in range(120))
    service = ProfileService(FakeStorage({"a": StoredProfile("a", recent=recent)}), FakeCache())

    (profile,) = await service.get_many(["a"], limit)

    assert profile.recent == recent[:expected]


async def test_writes_invalidate_the_cache() -> None:
    storage, cache = FakeStorage({}), FakeCache()
    service = ProfileService(storage, cache)
    await service.get_many(["a"])
    await service.upsert([("a", Attributes(region="DE"))])
    (after_upsert,) = await service.get_many(["a"])
    await service.delete("a")
    (after_delete,) = await service.get_many(["a"])

    assert after_upsert.attributes.region == "DE"
    assert not after_delete.known
