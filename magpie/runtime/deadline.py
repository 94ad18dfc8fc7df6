"""Carries the incoming call's deadline to every downstream gRPC call.

The server interceptor records the absolute deadline of the call being served
in a context variable; `DeadlinePropagation`, installed on every client
channel, shortens each outgoing call's timeout to what is left of it.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from typing import Any

import grpc

from magpie.runtime.errors import DeadlineExceeded

__all__ = [
    "CallDetailsInterceptor",
    "DeadlinePropagation",
    "remaining_seconds",
    "set_deadline_from",
]

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "magpie_deadline", default=None
)


def set_deadline_from(time_remaining: float | None) -> None:
    """Records the current call's deadline (None: the caller set none)."""
    _deadline.set(None if time_remaining is None else time.monotonic() + time_remaining)


def remaining_seconds() -> float | None:
    """Seconds left before the current call's deadline; None when it has none."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def _timeout_for(requested: float | None, default: float) -> float:
    left = remaining_seconds()
    if left is None:
        return requested if requested is not None else default
    if left <= 0:
        raise DeadlineExceeded("deadline exceeded before calling a dependency")
    return left if requested is None else min(requested, left)


class CallDetailsInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Client interceptor that rewrites each call's details (timeout, metadata) in `_details`,
    whatever the call's kind."""

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        raise NotImplementedError

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)

    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)

    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


class DeadlinePropagation(CallDetailsInterceptor):
    """Client interceptor: outgoing timeout = min(asked, left of incoming, default)."""

    def __init__(self, default_seconds: float) -> None:
        self._default = default_seconds

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        timeout = _timeout_for(details.timeout, self._default)
        return details._replace(timeout=timeout)
