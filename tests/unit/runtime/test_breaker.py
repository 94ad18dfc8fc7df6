import asyncio

import grpc
import pytest

from magpie.runtime.breaker import (
    CircuitBreaker,
    DependencyDown,
    dependency_error,
    is_dependency_down,
)
from magpie.runtime.errors import DeadlineExceeded, Unavailable


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _fail() -> None:
    raise OSError("down")


async def _ok() -> str:
    return "ok"


async def test_opens_after_threshold_and_fails_fast() -> None:
    clock = Clock()
    breaker = CircuitBreaker("dep", failure_threshold=3, reset_seconds=2.0, clock=clock)
    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1
        raise OSError("down")

    for _ in range(3):
        with pytest.raises(OSError):
            await breaker.call(counted)
    with pytest.raises(Unavailable):
        await breaker.call(counted)

    assert calls == 3
    assert breaker.state == "open"


async def test_half_open_trial_closes_on_success_and_reopens_on_failure() -> None:
    clock = Clock()
    breaker = CircuitBreaker("dep", failure_threshold=1, reset_seconds=2.0, clock=clock)
    with pytest.raises(OSError):
        await breaker.call(_fail)

    clock.now = 2.5
    assert breaker.state == "half-open"
    with pytest.raises(OSError):
        await breaker.call(_fail)
    assert breaker.state == "open"

    clock.now = 5.0
    assert await breaker.call(_ok) == "ok"
    assert breaker.state == "closed"


async def test_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker("dep", failure_threshold=2, clock=Clock())
    with pytest.raises(OSError):
        await breaker.call(_fail)
    await breaker.call(_ok)
    with pytest.raises(OSError):
        await breaker.call(_fail)

    assert breaker.state == "closed"


async def test_a_cancelled_call_counts_for_nothing() -> None:
    """The caller went away: the dependency told us nothing about its health."""
    breaker = CircuitBreaker("dep", failure_threshold=1, clock=Clock())

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await breaker.call(cancelled)

    assert breaker.state == "closed"


async def test_only_what_counts_opens_it_and_a_neutral_trial_stays_half_open() -> None:
    clock = Clock()
    breaker = CircuitBreaker(
        "dep", failure_threshold=2, clock=clock, counts=lambda e: isinstance(e, OSError)
    )

    async def refused() -> None:
        raise ValueError("the caller's request")

    for _ in range(3):
        with pytest.raises(ValueError):
            await breaker.call(refused)
    assert breaker.state == "closed"
    for _ in range(2):
        with pytest.raises(OSError):
            await breaker.call(_fail)
    assert breaker.state == "open"

    clock.now = 2.5
    with pytest.raises(ValueError):
        await breaker.call(refused)
    assert breaker.state == "half-open"  # the next call is the trial
    assert await breaker.call(_ok) == "ok"
    assert breaker.state == "closed"


_CODE = grpc.StatusCode


@pytest.mark.parametrize(
    ("code", "budget_bound", "expected"),
    [
        (_CODE.UNAVAILABLE, False, DependencyDown),
        (_CODE.RESOURCE_EXHAUSTED, True, DependencyDown),  # overloaded or limiting us
        (_CODE.RESOURCE_EXHAUSTED, False, Unavailable),  # or a deadline it refused
        (_CODE.INTERNAL, False, DependencyDown),
        (_CODE.UNKNOWN, False, DependencyDown),
        (_CODE.DEADLINE_EXCEEDED, True, DependencyDown),  # slower than the hop's budget
        (_CODE.DEADLINE_EXCEEDED, False, DeadlineExceeded),  # the caller's deadline ran out
        (_CODE.CANCELLED, True, Unavailable),
        (_CODE.NOT_FOUND, True, Unavailable),
        (_CODE.INVALID_ARGUMENT, True, Unavailable),
        (None, True, Unavailable),
    ],
)
def test_only_the_dependencys_own_faults_count(
    code: grpc.StatusCode | None, budget_bound: bool, expected: type[Exception]
) -> None:
    error = dependency_error("dep", code, "details", budget_bound=budget_bound)

    assert type(error) is expected
    assert is_dependency_down(error) is (expected is DependencyDown)
