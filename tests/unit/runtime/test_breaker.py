import pytest

from magpie.runtime.breaker import CircuitBreaker
from magpie.runtime.errors import Unavailable


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
