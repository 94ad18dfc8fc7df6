"""The request filter on products (magpie.v1.ProductFilter), shared by catalog, retrieval and
ranking: validation, conversion, and the one definition of what passes it."""

from __future__ import annotations

from dataclasses import dataclass

from magpie.runtime.products import (
    CATEGORY_SEPARATOR,
    category_problem,
    money_problems,
)
from magpie.runtime.units import NANOS_PER_UNIT
from magpie.runtime.validation import Violations, control_problem
from magpie.v1 import common_pb2

__all__ = [
    "CATEGORY_SEPARATOR",
    "MAX_FILTER_VALUES",
    "ProductFilter",
    "check_filter",
    "filter_from_proto",
    "filter_to_proto",
    "matches",
]

MAX_FILTER_VALUES = 5000
"""Most entries in each list of a ProductFilter."""
_MAX_BRAND = 1000


@dataclass(frozen=True, slots=True)
class ProductFilter:
    category_prefixes: tuple[str, ...] = ()
    """Whole levels: "Home > Kitchen" matches itself and below, not "Home > Kitchenware"."""
    brands: tuple[str, ...] = ()
    exclude_product_ids: tuple[str, ...] = ()
    currency: str = ""
    """Currency of the price bounds; products priced in another currency fail them."""
    min_price_nanos: int | None = None
    max_price_nanos: int | None = None

    @property
    def restricts_attributes(self) -> bool:
        """Whether :func:`matches` can reject anything (categories, brands or prices set)."""
        return bool(
            self.category_prefixes
            or self.brands
            or self.min_price_nanos is not None
            or self.max_price_nanos is not None
        )


def matches(f: ProductFilter, category_path: str, brand: str, currency: str, price: int) -> bool:
    """Whether a product (category path joined by CATEGORY_SEPARATOR, price in nanos of
    `currency`) passes the filter's category, brand and price rules."""
    if f.category_prefixes and not any(
        category_path == p or category_path.startswith(p + CATEGORY_SEPARATOR)
        for p in f.category_prefixes
    ):
        return False
    if f.brands and brand not in f.brands:
        return False
    if f.min_price_nanos is None and f.max_price_nanos is None:
        return True
    return (
        currency == f.currency
        and (f.min_price_nanos is None or price >= f.min_price_nanos)
        and (f.max_price_nanos is None or price <= f.max_price_nanos)
    )


def _nanos(money: common_pb2.Money) -> int:
    return money.units * NANOS_PER_UNIT + money.nanos


def check_filter(v: Violations, f: common_pb2.ProductFilter, field: str = "filter") -> None:
    """Adds a violation for every bad field of `f` (named under `field`)."""
    v.check_count(f.category_prefixes, f"{field}.category_prefixes", most=MAX_FILTER_VALUES)
    for i, prefix in enumerate(f.category_prefixes):
        problems = {category_problem(level) for level in prefix.split(CATEGORY_SEPARATOR)}
        for problem in sorted(p for p in problems if p is not None):
            v.add(f"{field}.category_prefixes[{i}]", f"each level {problem}")
    v.check_count(f.brands, f"{field}.brands", most=MAX_FILTER_VALUES)
    for i, brand in enumerate(f.brands):
        if not brand.strip() or len(brand) > _MAX_BRAND:
            v.add(f"{field}.brands[{i}]", f"must be 1 to {_MAX_BRAND} characters, not blank")
        elif (control := control_problem(brand)) is not None:
            v.add(f"{field}.brands[{i}]", control)
    v.check_ids(f.exclude_product_ids, f"{field}.exclude_product_ids", most=MAX_FILTER_VALUES)
    for name in ("min_price", "max_price"):
        if f.HasField(name):
            money = getattr(f, name)
            for part, problem in money_problems(money.currency_code, money.units, money.nanos):
                v.add(f"{field}.{name}.{part}", problem)
    if f.HasField("min_price") and f.HasField("max_price"):
        if f.min_price.currency_code != f.max_price.currency_code:
            v.add(f"{field}.max_price.currency_code", f"must equal {field}.min_price.currency_code")
        elif _nanos(f.min_price) > _nanos(f.max_price):
            v.add(f"{field}.max_price", f"must not be below {field}.min_price")


def filter_from_proto(f: common_pb2.ProductFilter) -> ProductFilter:
    bounds = [getattr(f, name) for name in ("min_price", "max_price") if f.HasField(name)]
    return ProductFilter(
        category_prefixes=tuple(f.category_prefixes),
        brands=tuple(f.brands),
        exclude_product_ids=tuple(f.exclude_product_ids),
        currency=bounds[0].currency_code if bounds else "",
        min_price_nanos=_nanos(f.min_price) if f.HasField("min_price") else None,
        max_price_nanos=_nanos(f.max_price) if f.HasField("max_price") else None,
    )


def filter_to_proto(f: ProductFilter) -> common_pb2.ProductFilter:
    def money(nanos: int | None) -> common_pb2.Money | None:
        if nanos is None:
            return None
        units, rest = divmod(nanos, NANOS_PER_UNIT)
        return common_pb2.Money(currency_code=f.currency, units=units, nanos=rest)

    return common_pb2.ProductFilter(
        category_prefixes=f.category_prefixes,
        min_price=money(f.min_price_nanos),
        max_price=money(f.max_price_nanos),
        exclude_product_ids=f.exclude_product_ids,
        brands=f.brands,
    )
