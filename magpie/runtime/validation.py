"""Building blocks for request validation.

Each service declares, per request message type, a function that inspects a
request and raises `InvalidArgument` listing every bad field; the server's
interceptor calls it before the handler (and on every message of a stream).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Sized
from typing import Any

from magpie.runtime.errors import FieldViolation, InvalidArgument

__all__ = ["MAX_ID_LENGTH", "Validator", "Validators", "Violations", "id_problem"]

MAX_ID_LENGTH = 128


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

    @property
    def items(self) -> list[FieldViolation]:
        return list(self._items)

    def raise_if_any(self) -> None:
        if self._items:
            raise InvalidArgument(self._items)
