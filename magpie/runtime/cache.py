"""A Redis read-through cache of serialized values, optional and never fatal.

With no Redis URL, or while Redis is down or slow, every read is a miss and writes
are dropped: the service answers from PostgreSQL, only slower. Each Redis operation
may take at most ``Settings.cache_timeout_ms``. Reads and fills (values read from
PostgreSQL) are optional: after `FAILURES_TO_OPEN` failed ones in a row a circuit
breaker skips them for `SKIP_SECONDS` (then one trial), so a hung Redis costs a few
timeouts, not one per request. Invalidations (`delete`, `set_markers`) are always tried:
one skipped while Redis works again would leave a stale value cached. A cached value
that no longer decodes (an older format, a corrupt write) is a miss, and is deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from magpie.runtime.breaker import CircuitBreaker
from magpie.runtime.errors import Unavailable
from magpie.runtime.settings import Settings

__all__ = ["FAILURES_TO_OPEN", "PRODUCT_STATS", "PROFILES", "SKIP_SECONDS", "Cache"]

logger = logging.getLogger(__name__)

V = TypeVar("V")
T = TypeVar("T")

FAILURES_TO_OPEN = 3
"""Failed reads or fills in a row after which they are skipped."""
SKIP_SECONDS = 2.0
"""How long reads and fills are skipped before one tries Redis again."""

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
    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        namespace: str,
        ttl_seconds: int,
        timeout_seconds: float = 0.05,
    ) -> None:
        """Keys are ``prefix + namespace + ":" + key`` (``prefix``: ``Settings.cache_prefix``);
        `timeout_seconds` bounds each connect and command."""
        self._client = (
            aioredis.Redis.from_url(
                url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
            )
            if url
            else None
        )
        self._prefix = f"{prefix}{namespace}:"
        self._ttl = ttl_seconds
        self._breaker = CircuitBreaker(
            f"cache {namespace}", failure_threshold=FAILURES_TO_OPEN, reset_seconds=SKIP_SECONDS
        )

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
            timeout_seconds=settings.cache_timeout_ms / 1000,
        )

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def _call(
        self,
        what: str,
        operation: Callable[[aioredis.Redis], Awaitable[T]],
        *,
        optional: bool = True,
        strict: bool = False,
    ) -> T | None:
        """`operation(client)`, through the breaker if `optional`; None when there is no
        Redis, it failed (logged; raised as `Unavailable` if `strict`) or the breaker
        skipped it."""
        client = self._client
        if client is None:
            return None
        try:
            if not optional:
                return await operation(client)
            return await self._breaker.call(lambda: operation(client))
        except RedisError as error:
            if strict:
                raise Unavailable(f"cache {what} failed: {error}") from error
            logger.warning("cache %s failed: %s", what, error)
        except Unavailable:
            logger.debug("cache %s skipped: circuit open", what)
        return None

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Cached values by key; missing keys (and all keys on error) are absent."""
        if not keys:
            return {}
        values = await self._call("read", lambda c: c.mget([self._key(k) for k in keys]))
        if values is None:
            return {}
        return {k: v for k, v in zip(keys, values, strict=True) if isinstance(v, bytes)}

    async def get_decoded(self, keys: Sequence[str], decode: Callable[[bytes], V]) -> dict[str, V]:
        """Like `get_many`, values passed through `decode`; a value it rejects (raises) is
        logged, deleted and absent, as if it had not been cached."""
        decoded: dict[str, V] = {}
        bad: list[str] = []
        for key, value in (await self.get_many(keys)).items():
            try:
                decoded[key] = decode(value)
            except Exception as error:  # noqa: BLE001 - whatever a decoder raises: a miss
                logger.warning("cached %s%s undecodable (%r); dropped", self._prefix, key, error)
                bad.append(key)
        await self.delete(bad)
        return decoded

    async def set_many(self, items: Mapping[str, bytes]) -> None:
        """Fills the cache (skipped while the breaker is open)."""
        await self._set_many("write", items, optional=True)

    async def set_markers(self, items: Mapping[str, bytes], *, strict: bool = False) -> None:
        """Like `set_many`, for values that invalidate (the write markers that
        `set_many_guarded` checks): tried even while the breaker is open; `strict`: a
        failure raises `Unavailable` (for a write the caller must retry) instead."""
        await self._set_many("invalidation", items, optional=False, strict=strict)

    async def _set_many(
        self, what: str, items: Mapping[str, bytes], *, optional: bool, strict: bool = False
    ) -> None:
        if not items:
            return
        keys = [self._key(k) for k in items]
        # one command, not one SET per key: a pipeline costs ~30 µs of Python per key
        await self._call(
            what,
            lambda c: c.eval(_SET_MANY, len(keys), *keys, self._ttl, *items.values()),
            optional=optional,
            strict=strict,
        )

    async def set_many_guarded(
        self,
        items: Mapping[str, bytes],
        guards: Mapping[str, tuple[str, bytes | None]],
        *,
        guard_cache: Cache | None = None,
    ) -> None:
        """Sets each key only if its guard key still holds the value read before (atomic).

        `guards[key]` is (guard key, value it held, None when absent); guard keys are in
        `guard_cache`'s namespace (same Redis), this cache's by default. A reader
        that read the guard before querying the database and a writer that
        changes the guard after its commit then never leave an old value cached.
        """
        if not items:
            return
        keys = [self._key(k) for k in items]
        guard_keys = [(guard_cache or self)._key(guards[k][0]) for k in items]
        args: list[bytes | int] = [self._ttl]
        for key, value in items.items():
            expected = guards[key][1]
            args += [value, b"" if expected is None else b"v" + expected]
        await self._call(
            "write",
            lambda c: c.eval(_SET_MANY_GUARDED, 2 * len(keys), *keys, *guard_keys, *args),
        )

    async def delete(self, keys: Sequence[str], *, strict: bool = False) -> None:
        """Invalidates keys; call after the database write has committed. `strict`: a
        failure raises `Unavailable` instead of being logged."""
        if keys:
            await self._call(
                "invalidation",
                lambda c: c.delete(*[self._key(k) for k in keys]),
                optional=False,
                strict=strict,
            )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
