"""Units and wire limits, each defined once for every process."""

from __future__ import annotations

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MICROS_PER_SECOND",
    "NANOS_PER_SECOND",
    "NANOS_PER_UNIT",
    "SECONDS_PER_DAY",
]

NANOS_PER_UNIT = 1_000_000_000
"""Money (magpie.v1.Money) in nano units of its currency: PostgreSQL keeps ``price_nanos``."""
NANOS_PER_SECOND = 1_000_000_000
MICROS_PER_SECOND = 1_000_000
"""Event times travel to PostgreSQL as Unix microseconds."""
SECONDS_PER_DAY = 86_400.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest gRPC message a Magpie server accepts or sends and a Magpie client receives."""
