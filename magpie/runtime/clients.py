"""Channels to other Magpie services, with the deadline carried on every call."""

from __future__ import annotations

import grpc

from magpie.runtime.deadline import DeadlinePropagation
from magpie.runtime.settings import Settings
from magpie.runtime.units import MAX_MESSAGE_BYTES

__all__ = ["open_channel"]


def open_channel(address: str, settings: Settings) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        address,
        interceptors=[DeadlinePropagation(settings.default_deadline_seconds)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 30_000),
        ],
    )
