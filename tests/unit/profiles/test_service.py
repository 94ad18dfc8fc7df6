"""Profile logic with hand-written storage and cache fakes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest

from magpie.runtime.paging import InvalidPageToken
from services.profiles.service import (
    Affinity,
    Attributes,
    Counts,
    Interaction,
    ListedUser,
    ProfileService,
    StoredProfile,
    UpsertOutcome,
    Window,
    attributes_problem,
    category_affinities,
)

T = datetime(2024, 1, 1, tzinfo=UTC)


class FakeStorage:
    def __init__(self, profiles: dict[str, StoredProfile]) -> None:
        self.profiles = profiles
        self.reads: list[list[str]] = []
        self.writes: list[list[str]] = []
        self.deleted: list[str] = []

    async def upsert(self, users: Sequence[tuple[str, Attributes]]) -> None:
        self.writes.append([user_id for user_id, _ in users])
        for user_id, attributes in users:
            self.profiles[user_id] = StoredProfile(user_id, attributes)

    async def get_many(self, user_ids: Sequence[str], history: int) -> dict[str, StoredProfile]:
        self.reads.append(list(user_ids))
        return {u: self.profiles[u] for u in user_ids if u in self.profiles}

    async def list_users(self, prefix: str, after_id: str, limit: int) -> list[ListedUser]:
        ids = sorted(u for u in self.profiles if u.startswith(prefix) and u > after_id)
        return [
            ListedUser(
                u,
                self.profiles[u].counts,
                self.profiles[u].attributes.personalization_refused,
            )
            for u in ids[:limit]
        ]

    async def delete(self, user_id: str, user_hash: str) -> tuple[bool, int]:
        self.deleted.append(user_hash)
        return self.profiles.pop(user_id, None) is not None, 0


class FakeCache:
    def __init__(self) -> None:
        self.entries: dict[str, StoredProfile] = {}
        self.marks: dict[str, bytes] = {}

    async def get_many(self, user_ids: Sequence[str]) -> dict[str, StoredProfile]:
        return {u: self.entries[u] for u in user_ids if u in self.entries}

    async def markers(self, user_ids: Sequence[str]) -> dict[str, bytes]:
        return {u: self.marks[u] for u in user_ids if u in self.marks}

    async def set_many(
        self, profiles: Sequence[StoredProfile], markers: Mapping[str, bytes]
    ) -> None:
        self.entries.update(
            (p.user_id, p) for p in profiles if self.marks.get(p.user_id) == markers.get(p.user_id)
        )

    async def invalidate(self, user_ids: Sequence[str], *, strict: bool) -> None:
        for user_id in user_ids:
            self.marks[user_id] = self.marks.get(user_id, b"") + b"+"
            self.entries.pop(user_id, None)


def hashed(user_id: str) -> str:
    return f"hash-of-{user_id}"


def service_of(storage: FakeStorage, cache: FakeCache | None = None) -> ProfileService:
    return ProfileService(storage, cache or FakeCache(), hashed)


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
    service = service_of(storage)

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
    service = service_of(FakeStorage({"a": StoredProfile("a", recent=recent)}))

    (profile,) = await service.get_many(["a"], limit)

    assert profile.recent == recent[:expected]


async def test_writes_invalidate_the_cache() -> None:
    storage, cache = FakeStorage({}), FakeCache()
    service = service_of(storage, cache)
    await service.get_many(["a"])
    await service.upsert([("a", Attributes(region="DE"))])
    (after_upsert,) = await service.get_many(["a"])
    await service.delete("a")
    (after_delete,) = await service.get_many(["a"])

    assert after_upsert.attributes.region == "DE"
    assert not after_delete.known
    assert storage.deleted == ["hash-of-a"]  # remembered by hash, never by id


async def test_bad_users_fail_alone_and_a_repeat_fails_naming_the_first() -> None:
    storage = FakeStorage({})
    users = [
        ("ok", Attributes(age_band=7, gender=3, region="DE-BY", segments=("student",))),
        ("band", Attributes(age_band=40_000)),
        ("gender", Attributes(gender=99)),
        ("nul", Attributes(region="DE\x00BY")),
        ("segment", Attributes(segments=("a", "b\tc"))),
        ("ok", Attributes(region="again")),
        ("ok2", Attributes()),
    ]

    outcomes = await service_of(storage).upsert(users)

    assert outcomes == [
        UpsertOutcome("ok"),
        UpsertOutcome("band", "attributes.age_band: must be 0-7 (magpie.v1.AgeBand), got 40000"),
        UpsertOutcome("gender", "attributes.gender: must be 0-3 (magpie.v1.Gender), got 99"),
        UpsertOutcome(
            "nul", "attributes.region: must not contain control characters (U+0000 at 2)"
        ),
        UpsertOutcome(
            "segment",
            "attributes.segments: [1] must not contain control characters (U+0009 at 1)",
        ),
        UpsertOutcome("ok", "user_id: duplicate of profiles[0]"),
        UpsertOutcome("ok2"),
    ]
    assert storage.writes == [["ok", "ok2"]]
    assert storage.profiles["ok"].attributes.region == "DE-BY"


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        (Attributes(age_band=-1), "age_band"),
        (Attributes(region="x" * 201), "region"),
        (Attributes(region="a\x7fb"), "region"),
        (Attributes(segments=("",)), "segments"),
        (Attributes(segments=("s",) * 101), "segments"),
    ],
)
def test_attribute_problems_name_the_field(attributes: Attributes, field: str) -> None:
    problem = attributes_problem(attributes)

    assert problem is not None and problem.startswith(f"attributes.{field}: ")


async def test_a_user_who_refused_personalisation_is_served_without_behaviour() -> None:
    behaviour = {
        "recent": (Interaction("p1", 2, T),),
        "affinities": (Affinity("Books", Window.LAST_7D, 1.0),),
        "purchased": ("p1",),
        "counts": Counts(clicks=1),
    }
    refused = Attributes(region="DE", consent_personalization=False, consent_analytics=True)
    storage = FakeStorage(
        {
            "no": StoredProfile("no", refused, T, **behaviour),  # type: ignore[arg-type]
            "yes": StoredProfile(
                "yes",
                Attributes(consent_personalization=True, consent_analytics=False),
                **behaviour,  # type: ignore[arg-type]
            ),
            "unstated": StoredProfile("unstated", **behaviour),  # type: ignore[arg-type]
        }
    )

    no, yes, unstated = await service_of(storage).get_many(["no", "yes", "unstated"])

    assert no == StoredProfile("no", refused, T)
    assert yes.recent and yes.purchased and yes.affinities and yes.counts.clicks == 1
    assert unstated.recent and unstated.purchased  # consent not stated: no objection


async def test_listing_pages_by_id_and_hides_counts_of_a_user_who_refused() -> None:
    refused = Attributes(consent_personalization=False, consent_analytics=False)
    storage = FakeStorage(
        {
            "u3": StoredProfile("u3", counts=Counts(clicks=3)),
            "u1": StoredProfile("u1", counts=Counts(purchases=1)),
            "u2": StoredProfile("u2", refused, counts=Counts(clicks=2)),
            "v1": StoredProfile("v1"),
        }
    )
    service = service_of(storage)

    first = await service.list_users("u", 2, "")
    last = await service.list_users("u", 2, first.next_page_token)

    assert [(u.user_id, u.counts) for u in first.users] == [
        ("u1", Counts(purchases=1)),
        ("u2", Counts()),
    ]
    assert [(u.user_id, u.counts) for u in last.users] == [("u3", Counts(clicks=3))]
    assert first.next_page_token and last.next_page_token == ""


async def test_a_token_of_another_prefix_is_refused() -> None:
    service = service_of(FakeStorage({u: StoredProfile(u) for u in ("a1", "a2", "b1")}))
    page = await service.list_users("a", 1, "")

    with pytest.raises(InvalidPageToken) as raised:
        await service.list_users("", 1, page.next_page_token)

    assert [v.field for v in raised.value.violations] == ["page_token"]
