import datetime

from magpie.runtime.filters import ProductFilter
from services.retrieval.products import ProductTable

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
NANOS = 1_000_000_000


def _row(
    pid: str,
    *,
    available: bool = True,
    path: str = "Home > Kitchen",
    brand: str = "Acme",
    price: int = 10,
    minutes: int = 0,
):  # type: ignore[no-untyped-def]
    return (
        pid,
        available,
        path,
        brand,
        "EUR",
        price * NANOS,
        T0 + datetime.timedelta(minutes=minutes),
    )


def test_eligibility_follows_availability_exclusions_and_the_filter() -> None:
    table = ProductTable()
    table.apply(
        [
            _row("ok"),
            _row("gone", available=False),
            _row("other", path="Home > Kitchenware"),
            _row("dear", price=99),
            _row("brand", brand="Zed"),
            _row("excluded"),
        ]
    )
    where = ProductFilter(
        category_prefixes=("Home > Kitchen",),
        brands=("Acme",),
        currency="EUR",
        max_price_nanos=50 * NANOS,
    )

    allowed = table.eligible(
        ["ok", "gone", "other", "dear", "brand", "excluded", "unknown"], where, ["excluded"]
    )

    assert allowed == ["ok"]
    assert table.top_categories(["ok", "unknown"]) == {"ok": "Home"}


def test_later_rows_replace_earlier_ones_and_reads_overlap_the_newest_change() -> None:
    table = ProductTable()
    assert table.read_since is None
    table.apply([_row("p", minutes=0)])
    table.apply([_row("p", available=False, minutes=5)])

    assert table.eligible(["p"], ProductFilter(), []) == []
    assert table.read_since is not None
    assert table.read_since < T0 + datetime.timedelta(minutes=5)
