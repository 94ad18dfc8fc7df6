"""The filter fingerprint of ListProducts' page tokens (the tokens: tests/unit/runtime)."""

from magpie.runtime.filters import ProductFilter
from services.catalog.service import ProductQuery


def test_fingerprint_ignores_list_order_but_not_content() -> None:
    a = ProductQuery(ProductFilter(("Home",), brands=("x", "y")), in_stock_only=True)
    same = ProductQuery(ProductFilter(("Home",), brands=("y", "x")), in_stock_only=True)
    other = ProductQuery(ProductFilter(("Home",), brands=("x",)), in_stock_only=True)
    looser = ProductQuery(ProductFilter(("Home",), brands=("x", "y")))

    assert a.fingerprint() == same.fingerprint()
    assert len({a.fingerprint(), other.fingerprint(), looser.fingerprint()}) == 3
