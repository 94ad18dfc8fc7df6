"""Channels to other Magpie services, with the deadline carried on every call."""

from __future__ import annotations

import grpc

from services.common.deadline import DeadlinePropagation
from services.common.settings import Settings

__all__ = ["open_channel"]


def open_channel(address: str, settings: Settings) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        address,
        interceptors=[DeadlinePropagation(settings.default_deadline_seconds)],
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.keepalive_time_ms", 30_000),
        ],
    )
