"""GetProfile's timestamps are built by arithmetic: the same Timestamps protobuf makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from services.profiles.servicer import _timestamp


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC),
        datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=2))),
        datetime(1999, 12, 31, 23, 59, 59, 999999),  # naive: UTC
        datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),  # before the epoch
    ],
)
def test_timestamps_equal_protobufs_own_conversion(at: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(at)

    assert _timestamp(at) == expected
