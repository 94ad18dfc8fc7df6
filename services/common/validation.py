"""Building blocks for request validation.

Each service declares, per request message type, a function that inspects a
request and raises `InvalidArgument` listing every bad field; the server's
interceptor calls it before the handler (and on every message of a stream).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sized
from typing import Any

from services.common.errors import FieldViolation, InvalidArgument

__all__ = ["MAX_ID_LENGTH", "Validator", "Validators", "Violations"]

MAX_ID_LENGTH = 128

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
        """A caller-chosen id: 1 to MAX_ID_LENGTH printable characters."""
        if not value:
            self.add(field, "must not be empty")
        elif len(value) > MAX_ID_LENGTH:
            self.add(field, f"must be at most {MAX_ID_LENGTH} characters")
        elif not value.isprintable():
            self.add(field, "must contain printable characters only")

    def check_count(self, values: Sized, field: str, *, most: int, least: int = 0) -> None:
        if len(values) < least:
            self.add(field, f"must have at least {least} entries")
        elif len(values) > most:
            self.add(field, f"must have at most {most} entries, got {len(values)}")

    def check_range(self, value: float, field: str, *, low: float, high: float) -> None:
        if not low <= value <= high:
            self.add(field, f"must be between {low:g} and {high:g}, got {value:g}")

    @property
    def items(self) -> list[FieldViolation]:
        return list(self._items)

    def raise_if_any(self) -> None:
        if self._items:
            raise InvalidArgument(self._items)
