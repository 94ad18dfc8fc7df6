"""Admission control: a process takes only the work it can finish in time.

Beyond its capacity a server that queues everything makes every caller late;
one that refuses early keeps the calls it accepts fast and lets the refused
ones go elsewhere or back off at once. Before a call runs, `Admission.enter`
refuses it with RESOURCE_EXHAUSTED when

- the process already runs `max_in_flight` calls (a hard bound on queued work;
  grpc.aio's own ``maximum_concurrent_rpcs`` did not refuse reliably, grpc #30424);
- what is left of the call's deadline is shorter than the call is expected to
  take: it would fail anyway, after using a slot and slowing the others. The
  expectation is the method's recent mean duration (an exponentially weighted
  mean of its successful calls) scaled by how much more work is in flight now
  than was on average while those calls ran (Little's law: at a given
  throughput, time in the system grows with the work in it). So beyond capacity
  the process holds the queue that its callers' deadlines allow, not more;
- its caller is over its rate (a token bucket per caller), when one is set.

Health checks are never refused, so probes tell overload from failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from magpie.runtime.errors import ResourceExhausted

__all__ = ["Admission"]

_WEIGHT = 0.1
"""Weight of the newest call in a method's mean duration."""
_MAX_CALLERS = 10_000
"""Token buckets kept (callers come from the tokens file; this bounds a misuse)."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    refilled_at: float


class Admission:
    def __init__(
        self,
        max_in_flight: int,
        *,
        rate_per_caller: float = 0.0,
        burst: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``rate_per_caller`` calls per second per caller (0: no limit), ``burst`` at once."""
        self._max_in_flight = max_in_flight
        self._rate = rate_per_caller
        self._burst = max(burst, 1.0)
        self._clock = clock
        self._in_flight = 0
        self._mean_in_flight = 1.0
        self._mean_seconds: dict[str, float] = {}
        self._buckets: dict[str, _Bucket] = {}

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def enter(self, method: str, caller: str, time_remaining: float | None) -> None:
        """Takes a slot for the call, or raises `ResourceExhausted`."""
        if self._in_flight >= self._max_in_flight:
            raise ResourceExhausted("server overloaded; retry with backoff")
        mean = self._mean_seconds.get(method)
        if time_remaining is not None and mean is not None:
            expected = mean * (self._in_flight + 1) / max(1.0, self._mean_in_flight)
            if time_remaining < expected:
                raise ResourceExhausted("deadline shorter than this call would take now")
        if self._rate > 0 and not self._take_token(caller):
            raise ResourceExhausted("rate limit exceeded; retry with backoff")
        self._in_flight += 1

    def leave(self, method: str, seconds: float | None) -> None:
        """Frees the call's slot; `seconds` (a successful unary call's duration; None for
        failures and streams) updates its method's mean duration."""
        self._mean_in_flight += _WEIGHT * (self._in_flight - self._mean_in_flight)
        self._in_flight -= 1
        if seconds is not None:
            mean = self._mean_seconds.get(method)
            self._mean_seconds[method] = (
                seconds if mean is None else mean + _WEIGHT * (seconds - mean)
            )

    def _take_token(self, caller: str) -> bool:
        now = self._clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= _MAX_CALLERS:
                self._buckets.clear()
            bucket = self._buckets[caller] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.refilled_at) * self._rate)
        bucket.refilled_at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True
