"""Rules on product content that more than one service applies: the catalog to the
products it stores, every service to the product filters (magpie.v1.ProductFilter)
it is sent."""

from __future__ import annotations

import re

from magpie.runtime.units import NANOS_PER_UNIT
from magpie.runtime.validation import control_problem

__all__ = [
    "CATEGORY_SEPARATOR",
    "MAX_CATEGORY_LEVEL_LENGTH",
    "MAX_PRICE_UNITS",
    "category_problem",
    "money_problems",
]

CATEGORY_SEPARATOR = " > "
"""Between the levels of a category path written as one string."""
MAX_CATEGORY_LEVEL_LENGTH = 200
MAX_PRICE_UNITS = 9_000_000_000
"""Largest price in whole units, so that the price in nano units fits a bigint."""
_CURRENCY = re.compile(r"[A-Z]{3}")


def category_problem(level: str) -> str | None:
    """Why `level` cannot be one level of a category path, or None.

    Levels are stored joined by CATEGORY_SEPARATOR, so none may contain it, nor
    start or end so that joining would create it, nor carry surrounding spaces.
    """
    if not level:
        return "must not be empty"
    if level != level.strip():
        return "must not start or end with spaces"
    if CATEGORY_SEPARATOR in f" {level} ":
        return f"must not contain {CATEGORY_SEPARATOR.strip()!r} between spaces"
    if len(level) > MAX_CATEGORY_LEVEL_LENGTH:
        return f"must be at most {MAX_CATEGORY_LEVEL_LENGTH} characters"
    return control_problem(level)


def money_problems(currency_code: str, units: int, nanos: int) -> list[tuple[str, str]]:
    """What is wrong with a price (magpie.v1.Money), as (sub-field, reason) pairs."""
    problems = []
    if not _CURRENCY.fullmatch(currency_code):
        problems.append(
            ("currency_code", f"must be a three-letter ISO 4217 code, got {currency_code!r}")
        )
    if not 0 <= nanos < NANOS_PER_UNIT:
        problems.append(("nanos", f"must be between 0 and {NANOS_PER_UNIT - 1}"))
    if not 0 <= units <= MAX_PRICE_UNITS:
        problems.append(("units", f"must be between 0 and {MAX_PRICE_UNITS}"))
    return problems
