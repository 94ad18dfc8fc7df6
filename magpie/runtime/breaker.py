"""A circuit breaker that stops calling a dependency that keeps failing.

Closed: calls go through; `failure_threshold` consecutive failures open it.
Open: calls fail at once with `Unavailable` for `reset_seconds`.
Half-open: after that, one trial call goes through; success closes the
breaker, failure opens it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from magpie.runtime.errors import Unavailable

__all__ = ["CircuitBreaker"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = failure_threshold
        self._reset_seconds = reset_seconds
        self._clock = clock
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
        except BaseException:
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
