"""A circuit breaker that stops calling a dependency that keeps failing.

Closed: calls go through; `failure_threshold` consecutive failures open it.
Open: calls fail at once with `Unavailable` for `reset_seconds`.
Half-open: after that, one trial call goes through; success closes the
breaker, failure opens it again.

A breaker is shared by every caller of the service that owns it, so only errors
that say the *dependency* failed may count: otherwise one caller could open it for
everyone (five requests the dependency rejects as invalid, five calls with a
deadline too short for the hop, five callers who hang up). Which errors count is
the breaker's ``counts``; the default counts every `Exception` but no cancellation
(`asyncio.CancelledError`: the caller went away, the dependency told us nothing).
An error that does not count is neutral: it neither adds to the failure count nor,
being no sign of health either, resets it; a neutral trial leaves the breaker
half-open for the next call.

For gRPC dependencies (and Triton, which answers gRPC status codes) `dependency_error`
is the policy, in one place. UNAVAILABLE, INTERNAL and UNKNOWN (``FAULT_CODES``) blame
the dependency whatever the request. DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED blame it
only when the hop's own time budget, not what was left of the caller's deadline, was
the tighter bound: a dependency slower than its budget, overloaded or limiting this
service as a whole (it sees the service as its caller) is one to back off from, but a
caller's short deadline also ends in DEADLINE_EXCEEDED, or in RESOURCE_EXHAUSTED from a
dependency's admission control (:mod:`magpie.runtime.admission` refuses a call whose
deadline is shorter than that method usually takes). What blames the dependency
becomes `DependencyDown`, the one error that counts with ``counts=is_dependency_down``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from magpie.runtime.errors import DeadlineExceeded, MagpieError, Unavailable

__all__ = [
    "FAULT_CODES",
    "CircuitBreaker",
    "DependencyDown",
    "dependency_error",
    "is_dependency_down",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

FAULT_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
)
"""Status codes that blame the dependency whatever the request was."""
_SLOW_CODES = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED})
"""Status codes that blame the dependency only when the hop's own budget was the bound."""


class DependencyDown(Unavailable):
    """The dependency itself failed: down, overloaded, erring, broken output, or slower
    than the hop's own budget. Answered as UNAVAILABLE like its parent."""


def is_dependency_down(error: BaseException) -> bool:
    """``counts`` for a breaker whose guarded calls raise `DependencyDown` on a fault."""
    return isinstance(error, DependencyDown)


def dependency_error(
    name: str, code: grpc.StatusCode | None, details: str, *, budget_bound: bool
) -> MagpieError:
    """The error for a call to dependency ``name`` that ended with ``code`` (None: the
    client failed before any status, nothing the dependency said).

    ``budget_bound``: the hop's own budget was at most what was left of the caller's
    deadline, so a DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED blames the dependency.
    Otherwise the caller's deadline may be the cause: `DeadlineExceeded` (or, for
    RESOURCE_EXHAUSTED, a plain `Unavailable`), which counts not. Any other code
    (NOT_FOUND, CANCELLED, UNIMPLEMENTED, ...) is a plain `Unavailable`: the answer
    degrades the same way, but one request's refusal opens no breaker.
    """
    message = f"{name}: {code.name if code else 'no status'}: {details}"
    if code in FAULT_CODES or (code in _SLOW_CODES and budget_bound):
        return DependencyDown(message)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(message)
    return Unavailable(message)


def _any_exception(error: BaseException) -> bool:
    return isinstance(error, Exception)


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        counts: Callable[[BaseException], bool] = _any_exception,
    ) -> None:
        self.name = name
        self._threshold = failure_threshold
        self._reset_seconds = reset_seconds
        self._clock = clock
        self._counts = counts
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self._reset_seconds:
            return "open"
        return "half-open"

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        state = self.state
        if state == "open" or (state == "half-open" and self._trial_running):
            raise Unavailable(f"{self.name} circuit open")
        self._trial_running = state == "half-open"
        try:
            result = await fn()
        except BaseException as error:
            if self._counts(error):
                self._record_failure()
            raise
        finally:
            self._trial_running = False
        self._record_success()
        return result

    def _record_failure(self) -> None:
        self._failures += 1
        if self._opened_at is not None or self._failures >= self._threshold:
            if self._opened_at is None:
                logger.warning("%s circuit opened after %d failures", self.name, self._failures)
            self._opened_at = self._clock()

    def _record_success(self) -> None:
        if self._opened_at is not None:
            logger.info("%s circuit closed", self.name)
        self._failures = 0
        self._opened_at = None
