"""Feedback logic: per-event checks, product existence, deleted users, in-batch duplicates,
stream pipelining.

Events travel as plain tuples (`EventRow`) rather than objects: ingestion
handles tens of thousands of events a second and per-event Python work is
what bounds it.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from magpie.runtime.metrics import FEEDBACK_EVENTS
from magpie.runtime.units import MICROS_PER_SECOND
from magpie.runtime.validation import MAX_ID_LENGTH
from services.feedback import config

__all__ = [
    "BatchResult",
    "DeletedUsers",
    "EventRow",
    "EventStorage",
    "EventType",
    "FeedbackService",
    "KnownProducts",
    "Outcome",
    "ProfileCache",
    "Stored",
    "event_problem",
]

EventRow = tuple[str, str, str, int, int | None, float, str, str, int, str, int, str]
"""(event_id, user_id, product_id, event_type, occurred_at in Unix microseconds or None
for "now", rating, recommendation_id, model_version, position, session_id, device,
comment)."""

_MAX_DEVICE = 4  # magpie.v1.Device
_CONFLICT = "event_id already used by this caller for a different event"


class EventType(IntEnum):
    """magpie.v1.EventType."""

    IMPRESSION = 1
    CLICK = 2
    ADD_TO_CART = 3
    PURCHASE = 4
    RATING = 5
    LIKE = 6
    DISLIKE = 7
    COMMENT = 8


class Outcome(IntEnum):
    """magpie.v1.EventOutcome."""

    ACCEPTED = 1
    DUPLICATE = 2
    REJECTED = 3
    CONFLICT = 4


@dataclass(frozen=True, slots=True)
class BatchResult:
    results: list[tuple[str, Outcome, str]]
    """(event_id, outcome, reason) per event, in request order."""
    accepted: int
    duplicates: int
    rejected: int


@dataclass(frozen=True, slots=True)
class Stored:
    new: set[str]
    """Event ids stored now."""
    conflicts: set[str]
    """Event ids the caller had already used for a different event: not stored."""


class DeletedUsers(Protocol):
    async def deleted_at(self, user_ids: Collection[str]) -> dict[str, int]:
        """When each of the users that DeleteProfile deleted was deleted (the latest time,
        Unix microseconds)."""
        ...


_DELETED_USER = "user_id was deleted; events from before the deletion are not stored"


class ProfileCache(Protocol):
    async def delete(self, keys: Sequence[str]) -> None:
        """Drops the cached profiles of these users (failures are logged, not raised)."""
        ...


class EventStorage(Protocol):
    async def existing_products(self, product_ids: Collection[str]) -> set[str]:
        """The subset of `product_ids` present in the catalog."""
        ...

    async def insert(self, rows: Sequence[EventRow], source: str, now_us: int) -> Stored:
        """Durably stores the rows whose event_id is new to `source` (the caller: event ids
        are scoped per caller); an occurred_at of None is stored as `now_us`."""
        ...


_TEXT_FIELDS = (
    ("event_id", True),
    ("user_id", True),
    ("product_id", True),
    ("recommendation_id", False),
    ("model_version", False),
    ("session_id", False),
)
_RATING = int(EventType.RATING)
_COMMENT = int(EventType.COMMENT)
_OPINIONS = frozenset({int(EventType.LIKE), int(EventType.DISLIKE)})
_LAST_TYPE = max(EventType)
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _text_problem(texts: tuple[str, ...]) -> str | None:
    for value, (name, required) in zip(texts, _TEXT_FIELDS, strict=True):
        if not value:
            if required:
                return f"{name} must not be empty"
        elif len(value) > MAX_ID_LENGTH:
            return f"{name} must be at most {MAX_ID_LENGTH} characters"
        elif not value.isprintable():
            return f"{name} must contain printable characters only"
    return None


def _comment_problem(comment: str) -> str | None:
    if not comment or comment.isspace():
        return "comment must not be empty (or white space only) for a comment event"
    if len(comment) > config.MAX_COMMENT_LENGTH:
        return f"comment must be at most {config.MAX_COMMENT_LENGTH} characters"
    if found := _CONTROL_BUT_NEWLINE.search(comment):
        return (
            "comment must not contain control characters other than line feed"
            f" (U+{ord(found.group()):04X} at {found.start()})"
        )
    return None


def event_problem(row: EventRow, latest_us: int) -> str | None:
    """Why the event cannot be stored, or None; `latest_us` bounds occurred_at.

    Runs once per event on the ingestion path, hence the single combined check
    of the text fields before the field-by-field explanation.
    """
    (
        event_id,
        user_id,
        product_id,
        kind,
        occurred_us,
        rating,
        rec,
        model,
        pos,
        session,
        dev,
        comment,
    ) = row
    texts = (event_id, user_id, product_id, rec, model, session)
    if not (
        event_id
        and user_id
        and product_id
        and max(map(len, texts)) <= MAX_ID_LENGTH
        and "".join(texts).isprintable()
    ):
        return _text_problem(texts)
    if not 1 <= kind <= _LAST_TYPE:
        return f"event_type must be one of 1-{_LAST_TYPE}, got {kind}"
    if kind == _RATING:
        if not (math.isfinite(rating) and 0.0 <= rating <= config.MAX_RATING):
            return f"rating must be between 0 and {config.MAX_RATING:g} for a rating event"
    elif rating != 0.0:
        return "rating must be 0 unless event_type is EVENT_TYPE_RATING"
    if kind == _COMMENT:
        if problem := _comment_problem(comment):
            return problem
    elif comment:
        return "comment must be empty unless event_type is EVENT_TYPE_COMMENT"
    if occurred_us is not None:
        if occurred_us > latest_us:
            return f"occurred_at is more than {config.MAX_FUTURE_SECONDS:g}s in the future"
        if occurred_us < 0:
            return "occurred_at must not be before 1970"
    if pos < 0:
        return "position must not be negative"
    if not 0 <= dev <= _MAX_DEVICE:
        return f"device must be one of 0-{_MAX_DEVICE}, got {dev}"
    return None


class KnownProducts:
    """Product ids recently seen in the catalog; a miss is always re-checked in the database."""

    def __init__(self, ttl_seconds: float, max_entries: int) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._expiry: dict[str, float] = {}

    def unknown(self, product_ids: Collection[str], now: float) -> set[str]:
        get = self._expiry.get
        return {p for p in product_ids if get(p, 0.0) <= now}

    def add(self, product_ids: Collection[str], now: float) -> None:
        if len(self._expiry) + len(product_ids) > self._max:
            self._expiry.clear()
        expiry = now + self._ttl
        self._expiry.update(dict.fromkeys(product_ids, expiry))


_NONE = Stored(set(), set())


class FeedbackService:
    def __init__(
        self,
        storage: EventStorage,
        products: KnownProducts,
        on_stored: Callable[[int], None] | None = None,
        deleted: DeletedUsers | None = None,
        profiles: ProfileCache | None = None,
    ) -> None:
        """``on_stored`` learns how many new events each batch stored (after the commit);
        an event of a user in ``deleted`` dated before the deletion is rejected. The users
        of newly stored likes and dislikes lose their cached profile in ``profiles`` right
        after the commit, so their next recommendation already follows the opinion (the
        consumer drops every touched profile too, but only once it has folded the events,
        which a long transaction anywhere on the PostgreSQL server can hold back)."""
        self._storage = storage
        self._products = products
        self._on_stored = on_stored
        self._deleted = deleted
        self._profiles = profiles

    async def record(self, rows: Sequence[EventRow], source: str = "") -> BatchResult:
        """Stores the batch's good, new events; says what happened to each event.
        `source` (the authenticated caller) scopes the event ids."""
        now = time.time()
        now_us = int(now * MICROS_PER_SECOND)
        latest_us = now_us + int(config.MAX_FUTURE_SECONDS * MICROS_PER_SECOND)
        problems = [event_problem(row, latest_us) for row in rows]
        missing = await self._missing_products(
            {row[2] for row, problem in zip(rows, problems, strict=True) if problem is None}, now
        )
        deleted = await self._deleted_users(rows, problems)
        results: list[tuple[str, Outcome, str]] = []
        to_store: list[EventRow] = []
        stored_at: list[int] = []  # index in results of each row of to_store
        seen: set[str] = set()
        for row, problem in zip(rows, problems, strict=True):
            event_id = row[0]
            if problem is None and row[2] in missing:
                problem = "unknown product_id"
            if problem is None and row[4] is not None and row[4] <= deleted.get(row[1], -1):
                problem = _DELETED_USER
            if problem is not None:
                results.append((event_id, Outcome.REJECTED, problem))
            elif event_id in seen:
                results.append((event_id, Outcome.DUPLICATE, "repeated in this batch"))
            else:
                seen.add(event_id)
                stored_at.append(len(results))
                results.append((event_id, Outcome.ACCEPTED, ""))
                to_store.append(row)
        written = await self._storage.insert(to_store, source, now_us) if to_store else _NONE
        stored = written.new
        if stored and self._on_stored is not None:
            self._on_stored(len(stored))
        if stored and self._profiles is not None:
            opinionated = {r[1] for r in to_store if r[3] in _OPINIONS and r[0] in stored}
            if opinionated:
                await self._profiles.delete(sorted(opinionated))
        if len(stored) < len(to_store):
            for i in stored_at:
                event_id = results[i][0]
                if event_id in written.conflicts:
                    results[i] = (event_id, Outcome.CONFLICT, _CONFLICT)
                elif event_id not in stored:
                    results[i] = (event_id, Outcome.DUPLICATE, "")
        rejected = sum(1 for _, o, _ in results if o in (Outcome.REJECTED, Outcome.CONFLICT))
        duplicates = len(results) - len(stored) - rejected
        for outcome, count in (
            ("accepted", len(stored)),
            ("duplicate", duplicates),
            ("rejected", rejected),
        ):
            FEEDBACK_EVENTS.labels(outcome=outcome).inc(count)
        return BatchResult(results, len(stored), duplicates, rejected)

    async def _deleted_users(
        self, rows: Sequence[EventRow], problems: Sequence[str | None]
    ) -> dict[str, int]:
        """Deletion times of the deleted users among those of good, dated events (an event
        without occurred_at happens now, after any deletion). Read before the insert, in a
        transaction of its own: an event checked just before a deletion commits and
        stored just after it outlives the deletion (a window of milliseconds)."""
        users = {
            row[1]
            for row, problem in zip(rows, problems, strict=True)
            if problem is None and row[4] is not None
        }
        if self._deleted is None or not users:
            return {}
        return await self._deleted.deleted_at(users)

    async def _missing_products(self, product_ids: set[str], now: float) -> set[str]:
        unknown = self._products.unknown(product_ids, now)
        if not unknown:
            return set()
        found = await self._storage.existing_products(unknown)
        self._products.add(found, now)
        return unknown - found

    async def record_stream(
        self, batches: AsyncIterator[tuple[int, Sequence[EventRow]]], source: str = ""
    ) -> AsyncIterator[tuple[int, BatchResult]]:
        """Records numbered batches, up to STREAM_PIPELINE_DEPTH at once.

        Each (sequence, result) comes out only after its batch and every
        earlier one are committed, in the order the batches came in.
        """
        window = asyncio.Semaphore(config.STREAM_PIPELINE_DEPTH)
        queue: asyncio.Queue[asyncio.Task[tuple[int, BatchResult]] | None] = asyncio.Queue()

        async def numbered(sequence: int, rows: Sequence[EventRow]) -> tuple[int, BatchResult]:
            return sequence, await self.record(rows, source)

        async def read() -> None:
            try:
                async for sequence, rows in batches:
                    await window.acquire()
                    queue.put_nowait(asyncio.create_task(numbered(sequence, rows)))
            finally:
                queue.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (task := await queue.get()) is not None:
                yield await task
                window.release()
            await reader  # raises what ended the request stream, if anything did
        finally:
            reader.cancel()
            while not queue.empty():
                if (left := queue.get_nowait()) is not None:
                    left.cancel()
