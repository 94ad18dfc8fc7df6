"""Channels to other Magpie services, with the deadline and the trace carried on every call."""

from __future__ import annotations

from typing import Any

import grpc

from magpie.runtime.deadline import DeadlinePropagation
from magpie.runtime.settings import Settings
from magpie.runtime.telemetry import tracing_enabled
from magpie.runtime.units import MAX_MESSAGE_BYTES

__all__ = ["open_channel"]


def open_channel(address: str, settings: Settings) -> grpc.aio.Channel:
    """A channel whose calls carry the incoming deadline (and, with tracing on, the trace
    context: a client span per call, its ``traceparent`` in the metadata)."""
    interceptors: list[Any] = [DeadlinePropagation(settings.default_deadline_seconds)]
    if tracing_enabled():
        from opentelemetry.instrumentation.grpc import aio_client_interceptors

        interceptors += aio_client_interceptors()  # type: ignore[no-untyped-call]
    return grpc.aio.insecure_channel(
        address,
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 30_000),
        ],
    )
