"""A Redis read-through cache of serialized values, optional and never fatal.

With no Redis URL, or while Redis is down, every read is a miss and writes are
dropped: the service answers from PostgreSQL, only slower.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from magpie.runtime.settings import Settings

__all__ = ["PRODUCT_STATS", "PROFILES", "Cache"]

logger = logging.getLogger(__name__)

# Namespaces shared by the service that caches an entity and those that
# invalidate it (the feedback consumer invalidates both); keys are the entity ids.
PROFILES = "profiles"
"""Profiles by user id (profile service)."""
PRODUCT_STATS = "catalog-stats"
"""Behaviour statistics of products by product id (catalog service)."""


_SET_MANY = """
for i, key in ipairs(KEYS) do redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1]) end
"""
"""Sets KEYS[i] to ARGV[i + 1] with a lifetime of ARGV[1] seconds."""

_SET_MANY_GUARDED = """
local n = #KEYS / 2
for i = 1, n do
    local guard = redis.call('GET', KEYS[n + i])
    local expected = ARGV[2 * i + 1]
    if (guard == false and expected == '') or (guard and 'v' .. guard == expected) then
        redis.call('SET', KEYS[i], ARGV[2 * i], 'EX', ARGV[1])
    end
end
"""
"""Sets KEYS[i] to ARGV[2i] (lifetime ARGV[1]) if guard KEYS[n + i] holds ARGV[2i + 1]
minus its leading "v"; an empty ARGV[2i + 1] expects the guard to be absent."""


class Cache:
    def __init__(self, url: str, *, prefix: str, namespace: str, ttl_seconds: int) -> None:
        """Keys are ``prefix + namespace + ":" + key`` (``prefix``: ``Settings.cache_prefix``)."""
        self._client = aioredis.Redis.from_url(url, socket_timeout=0.2) if url else None
        self._prefix = f"{prefix}{namespace}:"
        self._ttl = ttl_seconds

    @classmethod
    def from_settings(
        cls, settings: Settings, namespace: str, ttl_seconds: int | None = None
    ) -> Cache:
        """The process's cache for ``namespace`` (TTL default ``settings.cache_ttl_seconds``)."""
        return cls(
            settings.redis_url,
            prefix=settings.cache_prefix,
            namespace=namespace,
            ttl_seconds=ttl_seconds or settings.cache_ttl_seconds,
        )

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Cached values by key; missing keys (and all keys on error) are absent."""
        if self._client is None or not keys:
            return {}
        try:
            values = await self._client.mget([self._key(k) for k in keys])
        except RedisError as error:
            logger.warning("cache read failed: %s", error)
            return {}
        return {k: v for k, v in zip(keys, values, strict=True) if isinstance(v, bytes)}

    async def set_many(self, items: Mapping[str, bytes]) -> None:
        if self._client is None or not items:
            return
        keys = [self._key(k) for k in items]
        try:  # one command, not one SET per key: a pipeline costs ~30 µs of Python per key
            await self._client.eval(_SET_MANY, len(keys), *keys, self._ttl, *items.values())
        except RedisError as error:
            logger.warning("cache write failed: %s", error)

    async def set_many_guarded(
        self, items: Mapping[str, bytes], guards: Mapping[str, tuple[str, bytes | None]]
    ) -> None:
        """Sets each key only if its guard key still holds the value read before (atomic).

        `guards[key]` is (guard key, value it held, None when absent). A reader
        that read the guard before querying the database and a writer that
        changes the guard after its commit then never leave an old value cached.
        """
        if self._client is None or not items:
            return
        keys = [self._key(k) for k in items]
        guard_keys = [self._key(guards[k][0]) for k in items]
        args: list[bytes | int] = [self._ttl]
        for key, value in items.items():
            expected = guards[key][1]
            args += [value, b"" if expected is None else b"v" + expected]
        try:
            await self._client.eval(_SET_MANY_GUARDED, 2 * len(keys), *keys, *guard_keys, *args)
        except RedisError as error:
            logger.warning("cache write failed: %s", error)

    async def delete(self, keys: Sequence[str]) -> None:
        """Invalidates keys; call after the database write has committed."""
        if self._client is None or not keys:
            return
        try:
            await self._client.delete(*[self._key(k) for k in keys])
        except RedisError as error:
            logger.warning("cache invalidation failed: %s", error)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
