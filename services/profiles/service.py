"""Profile logic: checks of upserts, cold-start defaults, behaviour features, caching,
listing, deletion and consent.

Upserts. Each user of a page succeeds or fails on its own (`UpsertOutcome`): a user whose
attributes cannot be stored (`attributes_problem`: an enum number that is no member, a
control character, an over-long text) or who repeats an earlier user of the same page
(the first occurrence wins, the repeat is reported) is skipped; the others are stored in
one transaction.

Caching. Profiles are cached by user id. A reader that misses reads the user's write
marker before it queries PostgreSQL, and caches what it fetched only if the marker has
not changed meanwhile (one atomic Redis script). Every profile write (upsert, delete)
commits, then replaces the marker, then drops the cached profile. So once a write is
acknowledged no older profile is served from the cache; a GetProfile racing
DeleteProfile in particular cannot cache the deleted profile again. A delete answers
UNAVAILABLE when Redis does not confirm both steps (deleting is idempotent: the caller
retries), so a deleted profile is never served, not even from a Redis that failed
meanwhile. An upsert, like the catalog's, logs such a failure instead: Redis being down
must not stop writes, and a cached profile is then stale until its TTL ends. Also left:
the feedback consumer drops profiles after each fold without a marker, so behaviour
features a racing reader cached can lag one fold for the TTL.

Listing pages through the `users` rows by id (magpie.runtime.paging), straight from
PostgreSQL: a console's search needs no cache, and a deleted user has no row left.

Deletion removes the user's rows and records a keyed hash of the id (never the id) with
the time of deletion, so that the feedback service refuses events of the user dated
before it (a replay must not bring the user back).

Consent (magpie.v1.Consent). An upsert without `consent` states none: both flags are
None, which is no objection. A user who refused personalisation (`False`) is served
without behaviour-derived features (recent interactions, affinities, purchases, dislikes,
counts) and listed without counts: ranking and retrieval then treat them as a new user, so
their recommendations are the non-personalised ones. Analytics consent is honoured where
events are read for training (magpie.datasets.warehouse).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Protocol

from opentelemetry import trace

from magpie.runtime.metrics import CACHE_REQUESTS
from magpie.runtime.paging import decode_page_token, filter_fingerprint, next_page
from magpie.runtime.telemetry import ATTR
from magpie.runtime.validation import control_problem
from services.profiles import config

__all__ = [
    "Affinity",
    "AgeBand",
    "Attributes",
    "Counts",
    "Gender",
    "Interaction",
    "ListedUser",
    "ProfileCache",
    "ProfileService",
    "ProfileStorage",
    "StoredProfile",
    "UpsertOutcome",
    "UserPage",
    "Window",
    "attributes_problem",
    "category_affinities",
]


@dataclass(frozen=True, slots=True)
class Attributes:
    """Static user attributes; enum fields hold magpie.v1 enum numbers."""

    age_band: int = 0
    gender: int = 0
    region: str = ""
    segments: tuple[str, ...] = ()
    consent_personalization: bool | None = None
    """None (with `consent_analytics` None): the caller has not stated consent."""
    consent_analytics: bool | None = None

    @property
    def personalization_refused(self) -> bool:
        return self.consent_personalization is False


class AgeBand(IntEnum):
    """magpie.v1.AgeBand (0: unspecified)."""

    UNDER_18 = 1
    AGE_18_24 = 2
    AGE_25_34 = 3
    AGE_35_44 = 4
    AGE_45_54 = 5
    AGE_55_64 = 6
    AGE_65_PLUS = 7


class Gender(IntEnum):
    """magpie.v1.Gender (0: unspecified)."""

    FEMALE = 1
    MALE = 2
    OTHER = 3


class Window(IntEnum):
    """magpie.v1.FeatureWindow."""

    LAST_7D = 1
    LAST_30D = 2
    ALL_TIME = 3


@dataclass(frozen=True, slots=True)
class Interaction:
    product_id: str
    event_type: int
    """magpie.v1.EventType number."""
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class Affinity:
    category: str
    window: Window
    score: float
    """Share in [0, 1] of the user's event weight in the window."""


@dataclass(frozen=True, slots=True)
class Counts:
    impressions: int = 0
    clicks: int = 0
    add_to_carts: int = 0
    purchases: int = 0


@dataclass(frozen=True, slots=True)
class StoredProfile:
    user_id: str
    attributes: Attributes = field(default_factory=Attributes)
    updated_at: datetime | None = None
    known: bool = True
    recent: tuple[Interaction, ...] = ()
    """Newest first; dislikes are left out (they are no interest in the product)."""
    affinities: tuple[Affinity, ...] = ()
    purchased: tuple[str, ...] = ()
    """Newest purchase first."""
    disliked: tuple[str, ...] = ()
    """Products the user disliked (and did not like again since), newest first."""
    counts: Counts = field(default_factory=Counts)


@dataclass(frozen=True, slots=True)
class ListedUser:
    """A user in a listing: enough to choose whom to look at."""

    user_id: str
    counts: Counts = field(default_factory=Counts)
    personalization_refused: bool = False


@dataclass(frozen=True, slots=True)
class UserPage:
    users: list[ListedUser]
    next_page_token: str
    """Empty on the last page."""


@dataclass(frozen=True, slots=True)
class UpsertOutcome:
    user_id: str
    error: str = ""
    """Why the user was not stored, as "field: reason"; empty when stored."""


def _enum_problem(value: int, members: type[IntEnum]) -> str | None:
    if value == 0 or value in set(members):
        return None
    return f"must be 0-{max(members)} (magpie.v1.{members.__name__}), got {value}"


def _text_problem(value: str) -> str | None:
    if len(value) > config.MAX_TEXT_LENGTH:
        return f"must be at most {config.MAX_TEXT_LENGTH} characters"
    return control_problem(value)


def _segments_problem(segments: Sequence[str]) -> str | None:
    if len(segments) > config.MAX_SEGMENTS:
        return f"must have at most {config.MAX_SEGMENTS} entries"
    for i, segment in enumerate(segments):
        problem = "must not be empty" if not segment else _text_problem(segment)
        if problem is not None:
            return f"[{i}] {problem}"
    return None


def attributes_problem(a: Attributes) -> str | None:
    """Why the attributes cannot be stored, as "attributes.<field>: reason", or None."""
    for name, problem in (
        ("age_band", _enum_problem(a.age_band, AgeBand)),
        ("gender", _enum_problem(a.gender, Gender)),
        ("region", _text_problem(a.region)),
        ("segments", _segments_problem(a.segments)),
    ):
        if problem is not None:
            return f"attributes.{name}: {problem}"
    return None


def category_affinities(
    weights: Sequence[tuple[str, float, float, float]],
) -> tuple[Affinity, ...]:
    """Shares per window from (category, 7-day, 30-day, all-time weight) rows.

    Ordered by window, then by score (highest first), then by category.
    """
    affinities: list[Affinity] = []
    for column, window in enumerate(Window):
        per_category = [(category, values[column]) for category, *values in weights]
        total = sum(w for _, w in per_category)
        if total > 0:
            shares = sorted(((-w / total, c) for c, w in per_category if w > 0))
            affinities.extend(Affinity(c, window, -negative) for negative, c in shares)
    return tuple(affinities)


class ProfileStorage(Protocol):
    async def upsert(self, users: Sequence[tuple[str, Attributes]]) -> None:
        """Stores users with distinct ids."""
        ...

    async def get_many(self, user_ids: Sequence[str], history: int) -> dict[str, StoredProfile]:
        """Profiles of users with a users row or any events, with `history` interactions."""
        ...

    async def list_users(self, prefix: str, after_id: str, limit: int) -> list[ListedUser]:
        """Up to `limit` users with a users row whose id starts with `prefix` and sorts
        after `after_id` ("": from the first), ordered by id, with their counts."""
        ...

    async def delete(self, user_id: str, user_hash: str) -> tuple[bool, int]:
        """Removes the user and all rows about them and records `user_hash` as deleted now;
        returns (existed, events deleted)."""
        ...


class ProfileCache(Protocol):
    async def get_many(self, user_ids: Sequence[str]) -> dict[str, StoredProfile]: ...

    async def markers(self, user_ids: Sequence[str]) -> dict[str, bytes]:
        """The current write markers of users that have one."""
        ...

    async def set_many(
        self, profiles: Sequence[StoredProfile], markers: Mapping[str, bytes]
    ) -> None:
        """Caches each profile unless its user's marker differs from `markers` (absent:
        none expected)."""
        ...

    async def invalidate(self, user_ids: Sequence[str], *, strict: bool) -> None:
        """New markers, then the cached profiles dropped; `strict`: raises `Unavailable`
        unless both are done (else failures are logged)."""
        ...


class ProfileService:
    def __init__(
        self, storage: ProfileStorage, cache: ProfileCache, user_hash: Callable[[str], str]
    ) -> None:
        """`user_hash`: the keyed hash under which a deleted user is remembered."""
        self._storage = storage
        self._cache = cache
        self._user_hash = user_hash

    async def upsert(self, users: Sequence[tuple[str, Attributes]]) -> list[UpsertOutcome]:
        """Stores every acceptable user; the others are reported (in request order) and
        skipped."""
        outcomes: list[UpsertOutcome] = []
        accepted: dict[str, Attributes] = {}
        first_index: dict[str, int] = {}
        for i, (user_id, attributes) in enumerate(users):
            problem = attributes_problem(attributes)
            if problem is None and user_id in first_index:
                problem = f"user_id: duplicate of profiles[{first_index[user_id]}]"
            first_index.setdefault(user_id, i)
            if problem is None:
                accepted[user_id] = attributes
            outcomes.append(UpsertOutcome(user_id, problem or ""))
        if accepted:
            await self._storage.upsert(list(accepted.items()))
            await self._cache.invalidate(list(accepted), strict=False)
        return outcomes

    async def get_many(
        self, user_ids: Sequence[str], history_limit: int = 0
    ) -> list[StoredProfile]:
        """Profiles in request order; an unknown user gets an empty, `known=False` profile.

        Profiles are cached with the longest history; `history_limit` (0: the
        default) trims what is returned. A user who refused personalisation gets no
        behaviour-derived features.
        """
        unique = list(dict.fromkeys(user_ids))
        profiles = await self._cache.get_many(unique)
        missing = [u for u in unique if u not in profiles]
        _observe_cache(len(unique) - len(missing), len(missing))
        if missing:
            markers = await self._cache.markers(missing)
            found = await self._storage.get_many(missing, config.MAX_HISTORY)
            fetched = [found.get(u) or StoredProfile(user_id=u, known=False) for u in missing]
            await self._cache.set_many(fetched, markers)
            profiles.update((p.user_id, p) for p in fetched)
        limit = history_limit or config.DEFAULT_HISTORY
        return [_served(profiles[u], limit) for u in user_ids]

    async def list_users(self, prefix: str, page_size: int, page_token: str) -> UserPage:
        """One page of the users whose id starts with `prefix`; `page_token` continues a
        listing of the same prefix (`InvalidPageToken` otherwise)."""
        fingerprint = filter_fingerprint({"user_id_prefix": prefix})
        after_id = decode_page_token(page_token, fingerprint)
        rows = await self._storage.list_users(prefix, after_id, page_size + 1)
        users, token = next_page(rows, page_size, lambda u: u.user_id, fingerprint)
        return UserPage([_listed(u) for u in users], token)

    async def delete(self, user_id: str) -> tuple[bool, int]:
        deleted = await self._storage.delete(user_id, self._user_hash(user_id))
        await self._cache.invalidate([user_id], strict=True)
        return deleted


def _observe_cache(hits: int, misses: int) -> None:
    CACHE_REQUESTS.labels(namespace="profiles", result="hit").inc(hits)
    CACHE_REQUESTS.labels(namespace="profiles", result="miss").inc(misses)
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(ATTR.CACHE_HIT, misses == 0)


def _listed(user: ListedUser) -> ListedUser:
    """What a listing shows: no counts of a user who refused personalisation."""
    return dataclasses.replace(user, counts=Counts()) if user.personalization_refused else user


def _served(profile: StoredProfile, history: int) -> StoredProfile:
    """What a caller gets: `history` interactions at most, no behaviour at all when the
    user refused personalisation."""
    if profile.attributes.personalization_refused:
        return StoredProfile(
            user_id=profile.user_id,
            attributes=profile.attributes,
            updated_at=profile.updated_at,
            known=profile.known,
        )
    if len(profile.recent) <= history:
        return profile
    return dataclasses.replace(profile, recent=profile.recent[:history])
