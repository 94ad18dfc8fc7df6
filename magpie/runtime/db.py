"""PostgreSQL access for services: a bounded set of connections used off the event loop.

`Database.run(fn)` hands `fn` a psycopg2 connection inside a transaction on one of
`pool_size` worker threads, each owning one connection. A hung or slow database must not
wedge the service, so every call is bounded by the deadline of the call being served
(`magpie.runtime.deadline`; `Limits.wait_seconds` for work that has none):

- Waiting for a free connection: a call finding none before its deadline fails with
  DEADLINE_EXCEEDED (UNAVAILABLE without a deadline). Only as many calls as there are
  threads are handed to them, so no queue grows behind a hung database.
- The statement: sessions start with ``statement_timeout``, ``lock_timeout`` and
  ``idle_in_transaction_session_timeout`` (`Limits`); a transaction whose deadline is
  nearer runs under ``SET LOCAL statement_timeout`` of what is left. A statement or lock
  wait cut short answers UNAVAILABLE (DEADLINE_EXCEEDED when the deadline cut it).
- A lost connection is discarded and the call retried with exponential backoff for up to
  `retry_seconds`, never past the deadline; then UNAVAILABLE. Because a call may be
  retried after a commit whose acknowledgement was lost, `fn` must be idempotent
  (upserts, inserts with ON CONFLICT).
- The health probe (`ping`) has a thread and connection of its own: a pool busy with slow
  calls does not delay it, and a probe stuck on a hung server fails the next ones at once.
- The threads are daemons: one stuck on a stopped server (which answers nothing, not even
  a cancel request) is abandoned by `close` rather than waited for, so SIGTERM stays prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from magpie.runtime.deadline import remaining_seconds
from magpie.runtime.errors import DeadlineExceeded, Unavailable
from magpie.runtime.settings import Settings
from magpie.runtime.telemetry import instrument_connection, tracing_enabled

__all__ = ["Connection", "Database", "Limits", "connect_args"]

logger = logging.getLogger(__name__)

Connection = psycopg2.extensions.connection
T = TypeVar("T")

_CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)
_FIRST_BACKOFF_SECONDS = 0.05
_MAX_BACKOFF_SECONDS = 1.0
_CONNECT_TIMEOUT_SECONDS = 3
_JOIN_SECONDS = 1.0
"""How long `close` waits for an idle thread to close its connection and end."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What bounds a session and a call (a timeout of 0 ms is none; a keepalive value of
    0 is the OS default)."""

    statement_timeout_ms: int = 0
    lock_timeout_ms: int = 0
    idle_in_transaction_timeout_ms: int = 0
    keepalives_idle_seconds: int = 0
    keepalives_interval_seconds: int = 0
    keepalives_count: int = 0
    wait_seconds: float = 2.0
    """Longest wait for a free connection of a call that has no deadline."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            statement_timeout_ms=settings.db_statement_timeout_ms,
            lock_timeout_ms=settings.db_lock_timeout_ms,
            idle_in_transaction_timeout_ms=settings.db_idle_in_transaction_timeout_ms,
            keepalives_idle_seconds=settings.db_keepalives_idle_seconds,
            keepalives_interval_seconds=settings.db_keepalives_interval_seconds,
            keepalives_count=settings.db_keepalives_count,
            wait_seconds=settings.default_deadline_seconds,
        )


class _TracedConnection(psycopg2.extensions.connection):
    """A connection whose queries are spans (``instrument_connection``, not the global
    patch, which breaks ``register_type``: opentelemetry-python-contrib #143)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        instrument_connection(self)


def connect_args(url: str, application_name: str, limits: Limits) -> dict[str, Any]:
    """Keyword arguments of `psycopg2.connect`: the URL's own parameters win, except that
    the limits are appended to its ``options`` (a later ``-c`` wins in PostgreSQL)."""
    given = psycopg2.extensions.parse_dsn(url)
    keepalives = {
        "keepalives_idle": limits.keepalives_idle_seconds,
        "keepalives_interval": limits.keepalives_interval_seconds,
        "keepalives_count": limits.keepalives_count,
    }
    defaults: dict[str, Any] = {
        "connect_timeout": _CONNECT_TIMEOUT_SECONDS,
        "application_name": application_name,
        "keepalives": 1,
        **{k: v for k, v in keepalives.items() if v},  # libpq rejects 0 (EINVAL)
    }
    args = {"dsn": url, **{k: v for k, v in defaults.items() if k not in given}}
    session = {
        "statement_timeout": limits.statement_timeout_ms,
        "lock_timeout": limits.lock_timeout_ms,
        "idle_in_transaction_session_timeout": limits.idle_in_transaction_timeout_ms,
    }
    options = [given.get("options", ""), *(f"-c {k}={v}" for k, v in session.items() if v)]
    if joined := " ".join(o for o in options if o):
        args["options"] = joined
    if tracing_enabled():
        args["connection_factory"] = _TracedConnection
    return args


_Job = tuple[Callable[["_Worker"], Any], "Future[Any]"]


class _Worker:
    """One thread running `work(self)` on the jobs of `jobs` (a queue it may share with
    others; None ends it), and its connection (opened on first use, dropped when lost)."""

    def __init__(
        self, name: str, jobs: queue.SimpleQueue[_Job | None], work: Callable[[_Worker], None]
    ) -> None:
        self.jobs = jobs
        self.conn: Connection | None = None
        self.busy = False
        self.thread = threading.Thread(target=work, args=(self,), name=name, daemon=True)
        self.thread.start()

    def disconnect(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self.conn.close()
            self.conn = None


class Database:
    """The process's PostgreSQL: `pool_size` threads and connections for calls, and one
    of each for the health probe."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "magpie",
        pool_size: int = 8,
        retry_seconds: float = 2.0,
        limits: Limits = Limits(),
    ) -> None:
        """`name` becomes the sessions' ``application_name`` "magpie-<name>" (in
        ``pg_stat_activity``)."""
        self._connect = connect_args(url, f"magpie-{name}", limits)
        self._retry_seconds = retry_seconds
        self._limits = limits
        self._gate = asyncio.Semaphore(pool_size)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._workers = [_Worker(f"db-{i}", self._jobs, self._work) for i in range(pool_size)]
        self._prober = _Worker("db-probe", queue.SimpleQueue(), self._work)
        self._probe: Future[None] | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, name: str, pool_size: int | None = None
    ) -> Database:
        """The process's database; `name`: the service, e.g. "profiles"."""
        return cls(
            settings.database_url,
            name=name,
            pool_size=pool_size or settings.db_pool_size,
            retry_seconds=settings.db_retry_seconds,
            limits=Limits.from_settings(settings),
        )

    async def run(self, fn: Callable[[Connection], T], *, retry: bool = True) -> T:
        """Runs `fn(connection)` in one transaction on a worker thread."""
        left = remaining_seconds()
        if self._gate.locked():
            wait = self._limits.wait_seconds if left is None else left
            try:
                async with asyncio.timeout(max(wait, 0.0)):
                    await self._gate.acquire()
            except TimeoutError:
                if left is None:
                    raise Unavailable(
                        "no database connection free; is the database hung?"
                    ) from None
                raise DeadlineExceeded(
                    "deadline exceeded waiting for a database connection"
                ) from None
        else:
            await self._gate.acquire()
        loop = asyncio.get_running_loop()
        job = self._submit(self._jobs, fn, retry, _deadline(left))
        job.add_done_callback(lambda _: _call_soon(loop, self._gate.release))
        return await asyncio.wrap_future(job)

    def run_sync(self, fn: Callable[[Connection], T], retry: bool = True) -> T:
        """Like `run`, for callers that are not on an event loop (CLI, workers)."""
        return self._submit(self._jobs, fn, retry, None).result()

    def _submit(
        self,
        jobs: queue.SimpleQueue[_Job | None],
        fn: Callable[[Connection], T],
        retry: bool,
        deadline: float | None,
    ) -> Future[T]:
        context = contextvars.copy_context()  # the caller's span
        future: Future[T] = Future()
        jobs.put((lambda worker: context.run(self._call, worker, fn, retry, deadline), future))
        return future

    def _work(self, worker: _Worker) -> None:
        while (job := worker.jobs.get()) is not None:
            call, future = job
            if not future.set_running_or_notify_cancel():
                continue  # its caller gave up while it was queued
            worker.busy = True
            try:
                future.set_result(call(worker))
            except BaseException as error:  # noqa: BLE001 - handed to the caller
                future.set_exception(error)
            finally:
                worker.busy = False
        worker.disconnect()

    def _call(
        self, worker: _Worker, fn: Callable[[Connection], T], retry: bool, deadline: float | None
    ) -> T:
        give_up_at = time.monotonic() + (self._retry_seconds if retry else 0.0)
        if deadline is not None:
            give_up_at = min(give_up_at, deadline)
        backoff = _FIRST_BACKOFF_SECONDS
        while True:
            try:
                return self._attempt(worker, fn, deadline)
            except _CONNECTION_ERRORS as error:
                worker.disconnect()
                if time.monotonic() + backoff > give_up_at:
                    raise Unavailable("database unavailable") from error
                logger.warning("database connection lost (%s); retrying in %.2fs", error, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)

    def _attempt(self, worker: _Worker, fn: Callable[[Connection], T], deadline: float | None) -> T:
        if deadline is not None and deadline <= time.monotonic():
            raise DeadlineExceeded("deadline exceeded before the database call")
        if worker.conn is None or worker.conn.closed:
            worker.conn = psycopg2.connect(**self._connect)
        conn = worker.conn
        with conn:  # commits on success, rolls back on error
            by_deadline = self._limit_statement(conn, deadline)
            try:
                return fn(conn)
            except psycopg2.errors.LockNotAvailable as error:
                raise Unavailable("database lock wait timed out") from error
            except psycopg2.errors.QueryCanceled as error:
                if by_deadline:
                    raise DeadlineExceeded("deadline exceeded in a database call") from error
                raise Unavailable("database statement timed out") from error

    def _limit_statement(self, conn: Connection, deadline: float | None) -> bool:
        """Shortens this transaction's statement timeout to the deadline if that is nearer;
        returns whether it did."""
        if deadline is None:
            return False
        left_ms = max(math.ceil((deadline - time.monotonic()) * 1000), 1)
        default_ms = self._limits.statement_timeout_ms
        if default_ms and left_ms >= default_ms:
            return False
        with conn.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = %s", (left_ms,))
        return True

    async def ping(self) -> None:
        """Raises unless the database answers ``SELECT 1`` on the probe's own connection
        before the caller's deadline (no retries). A pool busy with slow calls delays no
        probe; while one is stuck on a hung server, the next ones fail at once."""
        if self._probe is not None and not self._probe.done():
            raise Unavailable("the previous database probe has not answered")
        self._probe = self._submit(
            self._prober.jobs, _select_one, False, _deadline(remaining_seconds())
        )
        await asyncio.wrap_future(self._probe)

    def close(self) -> None:
        """Ends the threads; idle ones close their connections, busy ones (stuck on a hung
        database) are abandoned: they are daemons and die with the process."""
        workers = [*self._workers, self._prober]
        for worker in workers:
            with contextlib.suppress(queue.Empty):
                while (job := worker.jobs.get_nowait()) is not None:
                    job[1].cancel()
        for worker in workers:
            worker.jobs.put(None)
        stuck = 0
        for worker in workers:
            if worker.busy:
                stuck += 1
            else:
                worker.thread.join(_JOIN_SECONDS)
        if stuck:
            logger.warning("abandoning %d database calls still running", stuck)


def _deadline(left: float | None) -> float | None:
    """The monotonic time `left` seconds from now (None: no deadline)."""
    return None if left is None else time.monotonic() + left


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    """Schedules `callback` on `loop` from any thread; a closed loop needs it no more."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)


def _select_one(conn: Connection) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
