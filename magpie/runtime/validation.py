"""Building blocks for request validation.

Each service declares, per request message type, a function that inspects a
request and raises `InvalidArgument` listing every bad field; the server's
interceptor calls it before the handler (and on every message of a stream).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence, Sized
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from magpie.runtime.errors import FieldViolation, InvalidArgument
from magpie.runtime.units import NANOS_PER_SECOND

_MIN_TIMESTAMP_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_TIMESTAMP_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z

__all__ = [
    "MAX_ID_LENGTH",
    "Validator",
    "Validators",
    "Violations",
    "control_problem",
    "id_problem",
]

MAX_ID_LENGTH = 128

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def control_problem(value: str, *, multiline: bool = False) -> str | None:
    """Why ``value`` cannot be stored as text: it holds a C0 control character or DEL
    (PostgreSQL text cannot hold NUL at all). ``multiline`` text (descriptions) may hold
    tab, line feed and carriage return."""
    found = (_CONTROL_IN_TEXT if multiline else _CONTROL).search(value)
    if found is None:
        return None
    return f"must not contain control characters (U+{ord(found.group()):04X} at {found.start()})"


def id_problem(value: str) -> str | None:
    """Why ``value`` is not a caller-chosen id (1 to MAX_ID_LENGTH printable characters)."""
    if not value:
        return "must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"must be at most {MAX_ID_LENGTH} characters"
    if not value.isprintable():
        return "must contain printable characters only"
    return None


Validator = Callable[[Any], None]
Validators = Mapping[type, Validator]


class Violations:
    """Collects field violations and raises them together."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self._items.append(FieldViolation(field, description))

    def check(self, ok: bool, field: str, description: str) -> None:
        if not ok:
            self.add(field, description)

    def check_id(self, value: str, field: str) -> None:
        """A caller-chosen id (see :func:`id_problem`)."""
        problem = id_problem(value)
        if problem is not None:
            self.add(field, problem)

    def check_ids(self, values: Sequence[str], field: str, *, most: int, least: int = 0) -> None:
        """A list of ids: its length, then every entry (named ``field[i]``)."""
        self.check_count(values, field, most=most, least=least)
        for i, value in enumerate(values):
            self.check_id(value, f"{field}[{i}]")

    def check_count(self, values: Sized, field: str, *, most: int, least: int = 0) -> None:
        if len(values) < least:
            self.add(field, f"must have at least {least} entries")
        elif len(values) > most:
            self.add(field, f"must have at most {most} entries, got {len(values)}")

    def check_range(self, value: float, field: str, *, low: float, high: float) -> None:
        if not low <= value <= high:
            self.add(field, f"must be between {low:g} and {high:g}, got {value:g}")

    def check_timestamp(self, ts: Timestamp, field: str) -> None:
        """A google.protobuf.Timestamp that converts: years 1-9999, nanos in [0, 1e9)."""
        self.check(
            _MIN_TIMESTAMP_SECONDS <= ts.seconds <= _MAX_TIMESTAMP_SECONDS
            and 0 <= ts.nanos < NANOS_PER_SECOND,
            field,
            "must be a valid timestamp between years 1 and 9999",
        )

    @property
    def items(self) -> list[FieldViolation]:
        return list(self._items)

    def raise_if_any(self) -> None:
        if self._items:
            raise InvalidArgument(self._items)
