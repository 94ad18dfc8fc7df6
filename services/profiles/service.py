"""Profile logic: cold-start defaults, behaviour features, caching, deletion."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Protocol

from opentelemetry import trace

from magpie.runtime.metrics import CACHE_REQUESTS
from magpie.runtime.telemetry import ATTR
from services.profiles import config

__all__ = [
    "Affinity",
    "Attributes",
    "Counts",
    "Interaction",
    "ProfileCache",
    "ProfileService",
    "ProfileStorage",
    "StoredProfile",
    "Window",
    "category_affinities",
]


@dataclass(frozen=True, slots=True)
class Attributes:
    """Static user attributes; enum fields hold magpie.v1 enum numbers."""

    age_band: int = 0
    gender: int = 0
    region: str = ""
    segments: tuple[str, ...] = ()
    consent_personalization: bool = False
    consent_analytics: bool = False


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
    """Newest first."""
    affinities: tuple[Affinity, ...] = ()
    purchased: tuple[str, ...] = ()
    """Newest purchase first."""
    counts: Counts = field(default_factory=Counts)


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
    async def upsert(self, users: Sequence[tuple[str, Attributes]]) -> None: ...

    async def get_many(self, user_ids: Sequence[str], history: int) -> dict[str, StoredProfile]:
        """Profiles of users with a users row or any events, with `history` interactions."""
        ...

    async def delete(self, user_id: str) -> tuple[bool, int]:
        """Removes the user and all rows about them; returns (existed, events deleted)."""
        ...


class ProfileCache(Protocol):
    async def get_many(self, user_ids: Sequence[str]) -> dict[str, StoredProfile]: ...
    async def set_many(self, profiles: Sequence[StoredProfile]) -> None: ...
    async def delete(self, user_ids: Sequence[str]) -> None: ...


class ProfileService:
    def __init__(self, storage: ProfileStorage, cache: ProfileCache) -> None:
        self._storage = storage
        self._cache = cache

    async def upsert(self, users: Sequence[tuple[str, Attributes]]) -> None:
        await self._storage.upsert(users)
        await self._cache.delete([user_id for user_id, _ in users])

    async def get_many(
        self, user_ids: Sequence[str], history_limit: int = 0
    ) -> list[StoredProfile]:
        """Profiles in request order; an unknown user gets an empty, `known=False` profile.

        Profiles are cached with the longest history; `history_limit` (0: the
        default) trims what is returned.
        """
        unique = list(dict.fromkeys(user_ids))
        profiles = await self._cache.get_many(unique)
        missing = [u for u in unique if u not in profiles]
        _observe_cache(len(unique) - len(missing), len(missing))
        if missing:
            found = await self._storage.get_many(missing, config.MAX_HISTORY)
            fetched = [found.get(u) or StoredProfile(user_id=u, known=False) for u in missing]
            await self._cache.set_many(fetched)
            profiles.update((p.user_id, p) for p in fetched)
        limit = history_limit or config.DEFAULT_HISTORY
        return [_trimmed(profiles[u], limit) for u in user_ids]

    async def delete(self, user_id: str) -> tuple[bool, int]:
        deleted = await self._storage.delete(user_id)
        await self._cache.delete([user_id])
        return deleted


def _observe_cache(hits: int, misses: int) -> None:
    CACHE_REQUESTS.labels(namespace="profiles", result="hit").inc(hits)
    CACHE_REQUESTS.labels(namespace="profiles", result="miss").inc(misses)
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(ATTR.CACHE_HIT, misses == 0)


def _trimmed(profile: StoredProfile, history: int) -> StoredProfile:
    if len(profile.recent) <= history:
        return profile
    return dataclasses.replace(profile, recent=profile.recent[:history])
