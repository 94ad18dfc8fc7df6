"""PostgreSQL access for services: a bounded connection pool run off the event loop.

`Database.run(fn)` hands `fn` a pooled psycopg2 connection inside a transaction
on a worker thread. A lost connection is discarded and the call retried with
exponential backoff for up to `retry_seconds`; after that it raises
`Unavailable`, which callers see as gRPC UNAVAILABLE. Because a call may be
retried after a commit whose acknowledgement was lost, `fn` must be idempotent
(upserts, inserts with ON CONFLICT).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions
import psycopg2.pool

from magpie.runtime.errors import Unavailable
from magpie.runtime.settings import Settings
from magpie.runtime.telemetry import instrument_connection, tracing_enabled

__all__ = ["Connection", "Database"]

logger = logging.getLogger(__name__)

Connection = psycopg2.extensions.connection
T = TypeVar("T")

_CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)
_FIRST_BACKOFF_SECONDS = 0.05
_MAX_BACKOFF_SECONDS = 1.0


class _LazyPool(psycopg2.pool.ThreadedConnectionPool):
    """Connects on demand (a service starts while its database is down) yet keeps every
    returned connection: psycopg2 closes those above `minconn`, which with 0 meant a new
    connection, and a new PostgreSQL backend, for every call."""

    def __init__(self, size: int, **connect: Any) -> None:
        super().__init__(0, size, **connect)
        self.minconn = size


class _TracedConnection(psycopg2.extensions.connection):
    """A connection whose queries are spans (``instrument_connection``, not the global
    patch, which breaks ``register_type``: opentelemetry-python-contrib #143)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        instrument_connection(self)


class Database:
    def __init__(self, url: str, *, pool_size: int = 8, retry_seconds: float = 2.0) -> None:
        self._url = url
        self._retry_seconds = retry_seconds
        traced = {"connection_factory": _TracedConnection} if tracing_enabled() else {}
        self._pool = _LazyPool(pool_size, dsn=url, connect_timeout=3, **traced)
        self._slots = threading.BoundedSemaphore(pool_size)
        self._executor = ThreadPoolExecutor(pool_size, thread_name_prefix="db")

    @classmethod
    def from_settings(cls, settings: Settings, *, pool_size: int | None = None) -> Database:
        return cls(
            settings.database_url,
            pool_size=pool_size or settings.db_pool_size,
            retry_seconds=settings.db_retry_seconds,
        )

    async def run(self, fn: Callable[[Connection], T], *, retry: bool = True) -> T:
        """Runs `fn(connection)` in one transaction on a worker thread."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._executor, context.run, self.run_sync, fn, retry)

    def run_sync(self, fn: Callable[[Connection], T], retry: bool = True) -> T:
        """Like `run`, for callers that are not on an event loop (CLI, workers)."""
        give_up_at = time.monotonic() + (self._retry_seconds if retry else 0.0)
        backoff = _FIRST_BACKOFF_SECONDS
        while True:
            try:
                return self._attempt(fn)
            except _CONNECTION_ERRORS as error:
                if time.monotonic() + backoff > give_up_at:
                    raise Unavailable("database unavailable") from error
                logger.warning("database connection lost (%s); retrying in %.2fs", error, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)

    def _attempt(self, fn: Callable[[Connection], T]) -> T:
        with self._slots:
            conn = self._pool.getconn()
            try:
                with conn:  # commits on success, rolls back on error
                    result = fn(conn)
            except _CONNECTION_ERRORS:
                self._pool.putconn(conn, close=True)
                raise
            except BaseException:
                self._pool.putconn(conn, close=bool(conn.closed))
                raise
            self._pool.putconn(conn)
            return result

    async def ping(self) -> None:
        """Raises `Unavailable` unless the database answers now (no retries)."""
        await self.run(_select_one, retry=False)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._pool.closeall()


def _select_one(conn: Connection) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
