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
        ],
        T0,
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


def test_later_rows_replace_earlier_ones() -> None:
    table = ProductTable()
    assert table.read_since is None
    table.apply([_row("p", minutes=0)], T0)
    table.apply([_row("p", available=False, minutes=5)], T0 + datetime.timedelta(minutes=5))

    assert table.eligible(["p"], ProductFilter(), []) == []


def test_a_read_right_after_changes_overlaps_the_read_time() -> None:
    """A transaction open at the last read may still commit rows stamped before it."""
    table = ProductTable()
    read_at = T0 + datetime.timedelta(seconds=3)
    table.apply([_row("p", minutes=0)], read_at)

    assert table.read_since == read_at - datetime.timedelta(seconds=10)


def test_once_changes_are_older_than_the_overlap_reads_start_at_the_newest_change() -> None:
    """After a bulk load nothing is re-read but the newest change (the old rule re-read the
    load's last ten seconds of rows every refresh)."""
    table = ProductTable()
    table.apply([_row("a", minutes=0), _row("b", minutes=1)], T0 + datetime.timedelta(hours=1))

    assert table.read_since == T0 + datetime.timedelta(minutes=1)
