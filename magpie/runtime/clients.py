"""Channels to other Magpie services: the deadline, the trace and this process's token
carried on every call, over TLS when the process has a certificate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import grpc

from magpie.runtime.auth import PresentToken, PresentTokenBlocking
from magpie.runtime.deadline import DeadlinePropagation
from magpie.runtime.settings import Settings
from magpie.runtime.telemetry import tracing_enabled
from magpie.runtime.tls import ReloadingChannel, tls_enabled
from magpie.runtime.units import MAX_MESSAGE_BYTES

__all__ = ["blocking_channel", "open_channel"]


def open_channel(address: str, settings: Settings) -> grpc.aio.Channel:
    """A channel whose calls carry the incoming deadline, the process's token (with
    ``auth_token_file``) and, with tracing on, the trace context (a client span per call,
    its ``traceparent`` in the metadata); TLS with ``tls_cert_file``."""
    interceptors: list[Any] = [DeadlinePropagation(settings.default_deadline_seconds)]
    if settings.auth_token_file:
        interceptors.append(PresentToken(settings.auth_token_file))
    if tracing_enabled():
        from opentelemetry.instrumentation.grpc import aio_client_interceptors

        interceptors += aio_client_interceptors()  # type: ignore[no-untyped-call]
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 30_000),
    ]
    if not tls_enabled(settings):
        return grpc.aio.insecure_channel(address, interceptors=interceptors, options=options)
    return cast(
        grpc.aio.Channel,
        ReloadingChannel(
            settings,
            lambda credentials: grpc.aio.secure_channel(
                address, credentials, interceptors=interceptors, options=options
            ),
        ),
    )


def blocking_channel(
    address: str, token_file: str = "", options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    """A blocking channel for the command-line tools (loading a data set, the demo's
    checks), presenting the token in ``token_file`` on every call when one is given."""
    channel = grpc.insecure_channel(address, options=list(options))
    if not token_file:
        return channel
    return grpc.intercept_channel(channel, PresentTokenBlocking(token_file))
