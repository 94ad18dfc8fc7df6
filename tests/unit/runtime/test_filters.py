"""Validation of magpie.v1.ProductFilter, the same in every service."""

import pytest

from magpie.runtime.filters import MAX_FILTER_VALUES, ProductFilter, check_filter, matches
from magpie.runtime.validation import Violations
from magpie.v1 import common_pb2


def _fields(f: common_pb2.ProductFilter) -> list[str]:
    v = Violations()
    check_filter(v, f)
    return [item.field for item in v.items]


def test_a_plain_filter_is_fine() -> None:
    f = common_pb2.ProductFilter(
        category_prefixes=["Home > Kitchen"],
        brands=["Acme"],
        exclude_product_ids=["p1"],
        min_price=common_pb2.Money(currency_code="EUR", units=1),
        max_price=common_pb2.Money(currency_code="EUR", units=9_000_000_000),
    )

    assert _fields(f) == []


@pytest.mark.parametrize("prefix", ["", "Home > ", " Home", "Home > Kids > ", "A >", "x" * 201])
def test_each_level_of_a_category_prefix_is_checked(prefix: str) -> None:
    f = common_pb2.ProductFilter(category_prefixes=["Home", prefix])

    assert _fields(f) == ["filter.category_prefixes[1]"]


def test_price_problems_name_the_part_of_the_bound() -> None:
    f = common_pb2.ProductFilter(
        min_price=common_pb2.Money(currency_code="eur", units=-1),
        max_price=common_pb2.Money(currency_code="EUR", units=9_000_000_001, nanos=-1),
    )

    assert _fields(f) == [
        "filter.min_price.currency_code",
        "filter.min_price.units",
        "filter.max_price.nanos",
        "filter.max_price.units",
        "filter.max_price.currency_code",
    ]


def test_each_list_is_capped() -> None:
    many = [f"p{i}" for i in range(MAX_FILTER_VALUES + 1)]
    f = common_pb2.ProductFilter(category_prefixes=many, brands=many, exclude_product_ids=many)

    assert _fields(f) == [
        "filter.category_prefixes",
        "filter.brands",
        "filter.exclude_product_ids",
    ]


@pytest.mark.parametrize(
    ("where", "restricts"),
    [
        (ProductFilter(), False),
        (ProductFilter(exclude_product_ids=("p1",)), False),
        (ProductFilter(category_prefixes=("Home",)), True),
        (ProductFilter(brands=("Acme",)), True),
        (ProductFilter(currency="EUR", min_price_nanos=0), True),
        (ProductFilter(currency="EUR", max_price_nanos=5), True),
    ],
)
def test_restricts_attributes_says_whether_matches_can_reject(
    where: ProductFilter, restricts: bool
) -> None:
    assert where.restricts_attributes is restricts
    if not restricts:
        assert matches(where, "Toys", "Other", "USD", 10**12)
