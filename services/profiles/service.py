"""Profile logic: cold-start defaults, batching, deletion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

__all__ = ["Attributes", "ProfileService", "ProfileStorage", "StoredProfile"]


@dataclass(frozen=True, slots=True)
class Attributes:
    """Static user attributes; enum fields hold magpie.v1 enum numbers."""

    age_band: int = 0
    gender: int = 0
    region: str = ""
    segments: tuple[str, ...] = ()
    consent_personalization: bool = False
    consent_analytics: bool = False


@dataclass(frozen=True, slots=True)
class StoredProfile:
    user_id: str
    attributes: Attributes = field(default_factory=Attributes)
    updated_at: datetime | None = None
    known: bool = True


class ProfileStorage(Protocol):
    async def upsert(self, users: Sequence[tuple[str, Attributes]]) -> None: ...
    async def get_many(self, user_ids: Sequence[str]) -> dict[str, StoredProfile]: ...
    async def delete(self, user_id: str) -> tuple[bool, int]: ...


class ProfileService:
    def __init__(self, storage: ProfileStorage) -> None:
        self._storage = storage

    async def upsert(self, users: Sequence[tuple[str, Attributes]]) -> None:
        await self._storage.upsert(users)

    async def get_many(self, user_ids: Sequence[str]) -> list[StoredProfile]:
        """Profiles in request order; an unknown user gets an empty, `known=False` profile."""
        found = await self._storage.get_many(user_ids)
        return [found.get(u) or StoredProfile(user_id=u, known=False) for u in user_ids]

    async def delete(self, user_id: str) -> tuple[bool, int]:
        return await self._storage.delete(user_id)
