"""A value loaded from PostgreSQL (the popularity lists) and reloaded when it is older than
its time to live, served stale while one background load replaces it."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Refreshed"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Refreshed(Generic[T]):
    def __init__(
        self,
        load: Callable[[], Awaitable[T]],
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl_seconds
        self._clock = clock
        self._value: T | None = None
        self._loaded_at = 0.0
        self._pending: asyncio.Task[T] | None = None

    async def get(self) -> T:
        """The value; the first call waits for it, later ones get it while it refreshes."""
        if self._value is None:
            return await asyncio.shield(self._start())
        if self._clock() - self._loaded_at > self._ttl:
            self._start()
        return self._value

    def _start(self) -> asyncio.Task[T]:
        if self._pending is None:
            # A fresh context: the load serves every later caller, so the deadline of the
            # call that happened to start it must not cut it short.
            self._pending = asyncio.create_task(self._reload(), context=contextvars.Context())
            # A failed background refresh is logged in _reload; mark it retrieved.
            self._pending.add_done_callback(lambda task: task.cancelled() or task.exception())
        return self._pending

    async def _reload(self) -> T:
        try:
            value = await self._load()
            self._value, self._loaded_at = value, self._clock()
            return value
        except Exception as error:
            if self._value is not None:
                logger.warning("refresh failed, serving the previous value: %s", error)
            raise
        finally:
            self._pending = None
