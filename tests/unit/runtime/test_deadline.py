import asyncio

import pytest

from magpie.runtime import deadline
from magpie.runtime.errors import DeadlineExceeded


def _in_fresh_context(fn):  # type: ignore[no-untyped-def]
    """Runs fn in a copy of the context, as each gRPC call does."""
    import contextvars

    return contextvars.copy_context().run(fn)


def test_without_incoming_deadline_the_default_applies() -> None:
    def check() -> None:
        deadline.set_deadline_from(None)
        assert deadline.remaining_seconds() is None
        assert deadline._timeout_for(None, 2.0) == 2.0
        assert deadline._timeout_for(0.7, 2.0) == 0.7

    _in_fresh_context(check)


def test_outgoing_timeout_never_exceeds_what_is_left() -> None:
    def check() -> None:
        deadline.set_deadline_from(0.5)
        assert deadline._timeout_for(None, 2.0) <= 0.5
        assert deadline._timeout_for(5.0, 2.0) <= 0.5
        assert deadline._timeout_for(0.1, 2.0) == 0.1

    _in_fresh_context(check)


def test_expired_deadline_refuses_to_call() -> None:
    def check() -> None:
        deadline.set_deadline_from(-0.01)
        with pytest.raises(DeadlineExceeded):
            deadline._timeout_for(None, 2.0)

    _in_fresh_context(check)


async def test_deadline_is_per_task() -> None:
    async def serve_call(budget: float) -> float | None:
        deadline.set_deadline_from(budget)
        await asyncio.sleep(0)
        return deadline.remaining_seconds()

    short, long = await asyncio.gather(serve_call(1.0), serve_call(100.0))

    assert short is not None and short <= 1.0
    assert long is not None and long > 50
