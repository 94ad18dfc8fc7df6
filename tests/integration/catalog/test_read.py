"""GetProducts and ListProducts through the real catalog server."""

from datetime import UTC, datetime, timedelta

import grpc
import psycopg2
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from magpie.v1 import catalog_pb2 as pb
from magpie.v1 import common_pb2
from tests.support import field_violations

pytestmark = pytest.mark.integration


async def _load(catalog, products) -> None:  # type: ignore[no-untyped-def]
    for start in range(0, len(products), 1000):
        response = await catalog.UpsertProducts(
            pb.UpsertProductsRequest(products=products[start : start + 1000])
        )
        assert all(r.ok for r in response.results)


async def test_get_keeps_request_order_and_reports_missing(catalog, product) -> None:  # type: ignore[no-untyped-def]
    await _load(catalog, [product(f"p{i:04d}") for i in range(1500)])
    ids = [f"p{i:04d}" for i in range(1499, -1, -1)]
    ids[10:10] = ["ghost-1", "p0007", "ghost-2", "ghost-1"]  # unknown and repeated ids

    response = await catalog.GetProducts(pb.GetProductsRequest(product_ids=ids))

    assert [p.product_id for p in response.products] == [i for i in ids if "ghost" not in i]
    assert list(response.missing_product_ids) == ["ghost-1", "ghost-2"]


async def test_get_hides_inactive_products_unless_asked(catalog, product) -> None:  # type: ignore[no-untyped-def]
    await _load(catalog, [product("a"), product("b"), product("c")])
    await catalog.SetProductStatus(
        pb.SetProductStatusRequest(product_ids=["a"], status=pb.PRODUCT_STATUS_HIDDEN)
    )
    await catalog.SetProductStatus(
        pb.SetProductStatusRequest(product_ids=["c"], status=pb.PRODUCT_STATUS_WITHDRAWN)
    )

    active = await catalog.GetProducts(pb.GetProductsRequest(product_ids=["a", "b", "c"]))
    every = await catalog.GetProducts(
        pb.GetProductsRequest(product_ids=["a", "b", "c"], include_inactive=True)
    )

    assert [p.product_id for p in active.products] == ["b"]
    assert list(active.missing_product_ids) == ["a", "c"]
    assert [(p.product_id, p.status) for p in every.products] == [
        ("a", pb.PRODUCT_STATUS_HIDDEN),
        ("b", pb.PRODUCT_STATUS_ACTIVE),
        ("c", pb.PRODUCT_STATUS_WITHDRAWN),
    ]
    assert list(every.missing_product_ids) == []


@pytest.mark.parametrize(
    ("ids", "fields"),
    [
        ([], ["product_ids"]),
        (["x"] * 2001, ["product_ids"]),
        (["ok", "", "a" * 129], ["product_ids[1]", "product_ids[2]"]),
    ],
)
async def test_malformed_gets_name_the_field(catalog, ids, fields) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await catalog.GetProducts(pb.GetProductsRequest(product_ids=ids))

    assert field_violations(raised.value) == fields


async def _walk(catalog, request: pb.ListProductsRequest) -> tuple[list[str], int]:  # type: ignore[no-untyped-def]
    """Every product id listed, page by page, and the number of pages."""
    ids: list[str] = []
    pages = 0
    while True:
        response = await catalog.ListProducts(request)
        pages += 1
        ids += [p.product_id for p in response.products]
        if not response.next_page_token:
            return ids, pages
        request.page_token = response.next_page_token


async def test_pages_walk_every_match_exactly_once(catalog, product) -> None:  # type: ignore[no-untyped-def]
    products = []
    for i in range(250):
        category = ["Home", "Kitchen", "Knives"] if i % 2 else ["Home", "Kitchenware"]
        products.append(
            product(
                f"p{i:03d}",
                category_path=category,
                stock=i % 5,
                brand="Acme" if i % 3 else "Zed",
                price=common_pb2.Money(currency_code="EUR", units=i),
            )
        )
    await _load(catalog, products)
    await catalog.SetProductStatus(
        pb.SetProductStatusRequest(product_ids=["p001", "p003"], status=pb.PRODUCT_STATUS_HIDDEN)
    )
    request = pb.ListProductsRequest(
        page_size=7,
        in_stock_only=True,
        filter=common_pb2.ProductFilter(
            category_prefixes=["Home > Kitchen"],
            brands=["Acme"],
            min_price=common_pb2.Money(currency_code="EUR", units=20),
            max_price=common_pb2.Money(currency_code="EUR", units=200),
            exclude_product_ids=["p025"],
        ),
    )

    ids, pages = await _walk(catalog, request)

    expected = [f"p{i:03d}" for i in range(20, 201) if i % 2 and i % 5 and i % 3 and i != 25]
    assert ids == expected
    assert pages == -(-len(expected) // 7)


async def test_whole_catalog_in_default_pages_without_inactive(catalog, product) -> None:  # type: ignore[no-untyped-def]
    await _load(catalog, [product(f"p{i:03d}") for i in range(230)])
    await catalog.SetProductStatus(
        pb.SetProductStatusRequest(product_ids=["p000", "p150"], status=pb.PRODUCT_STATUS_WITHDRAWN)
    )

    active, pages = await _walk(catalog, pb.ListProductsRequest())
    every, _ = await _walk(catalog, pb.ListProductsRequest(include_inactive=True, page_size=1000))

    assert pages == 3
    assert active == [f"p{i:03d}" for i in range(230) if i not in (0, 150)]
    assert every == [f"p{i:03d}" for i in range(230)]


async def test_category_prefix_matches_whole_levels_and_escapes_wildcards(catalog, product) -> None:  # type: ignore[no-untyped-def]
    await _load(
        catalog,
        [
            product("exact", category_path=["Home", "50%_off"]),
            product("below", category_path=["Home", "50%_off", "Pans"]),
            product("wild", category_path=["Home", "50%Xoff"]),
            product("longer", category_path=["Home", "50%_offers"]),
            product("root", category_path=["Home"]),
        ],
    )

    response = await catalog.ListProducts(
        pb.ListProductsRequest(
            filter=common_pb2.ProductFilter(category_prefixes=["Home > 50%_off"])
        )
    )

    assert [p.product_id for p in response.products] == ["below", "exact"]


async def test_updated_since_keeps_recent_changes(catalog, product, clean_db) -> None:  # type: ignore[no-untyped-def]
    await _load(catalog, [product("old"), product("new")])
    with psycopg2.connect(clean_db) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE products SET updated_at = now() - interval '2 days' WHERE product_id = 'old'"
        )
    since = Timestamp()
    since.FromDatetime(datetime.now(UTC) - timedelta(days=1))

    response = await catalog.ListProducts(pb.ListProductsRequest(updated_since=since))

    assert [p.product_id for p in response.products] == ["new"]


async def test_token_from_another_filter_is_refused(catalog, product) -> None:  # type: ignore[no-untyped-def]
    await _load(catalog, [product(f"p{i}") for i in range(5)])
    first = await catalog.ListProducts(pb.ListProductsRequest(page_size=2, in_stock_only=True))
    # Same filter, different page size and list order: the token still applies.
    same = await catalog.ListProducts(
        pb.ListProductsRequest(page_size=3, in_stock_only=True, page_token=first.next_page_token)
    )

    with pytest.raises(grpc.aio.AioRpcError) as other_filter:
        await catalog.ListProducts(
            pb.ListProductsRequest(page_size=2, page_token=first.next_page_token)
        )
    with pytest.raises(grpc.aio.AioRpcError) as garbage:
        await catalog.ListProducts(pb.ListProductsRequest(page_token="not-a-token"))

    assert [p.product_id for p in same.products] == ["p2", "p3", "p4"]
    assert field_violations(other_filter.value) == ["page_token"]
    assert field_violations(garbage.value) == ["page_token"]


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (pb.ListProductsRequest(page_size=1001), ["page_size"]),
        (pb.ListProductsRequest(page_size=-1), ["page_size"]),
        (
            pb.ListProductsRequest(
                filter=common_pb2.ProductFilter(
                    min_price=common_pb2.Money(currency_code="EUR", units=1),
                    max_price=common_pb2.Money(currency_code="USD", units=2),
                )
            ),
            ["filter.max_price.currency_code"],
        ),
        (
            pb.ListProductsRequest(
                filter=common_pb2.ProductFilter(
                    min_price=common_pb2.Money(currency_code="EUR", units=-1),
                    category_prefixes=["Home > "],
                    exclude_product_ids=[""],
                )
            ),
            [
                "filter.category_prefixes[0]",
                "filter.exclude_product_ids[0]",
                "filter.min_price.units",
            ],
        ),
    ],
)
async def test_malformed_lists_name_the_field(catalog, request_, fields) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await catalog.ListProducts(request_)

    assert field_violations(raised.value) == fields


async def test_read_mask_returns_only_the_named_fields_and_skips_stats(
    catalog, product, clean_db
) -> None:  # type: ignore[no-untyped-def]
    await _load(catalog, [product("a")])
    conn = psycopg2.connect(clean_db)
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO product_daily_counts (product_id, day, clicks) "
            "VALUES ('a', current_date, 3)"
        )
    conn.close()
    mask = {"paths": ["product_id", "stock"]}

    masked = await catalog.GetProducts(pb.GetProductsRequest(product_ids=["a"], read_mask=mask))
    full = await catalog.GetProducts(pb.GetProductsRequest(product_ids=["a"]))

    (only,) = masked.products
    assert only.product_id == "a" and only.stock == full.products[0].stock > 0
    assert only.title == "" and not only.HasField("stats")
    assert full.products[0].title and full.products[0].stats.clicks_1d == 3


async def test_read_mask_naming_no_product_field_is_rejected(catalog) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await catalog.GetProducts(
            pb.GetProductsRequest(product_ids=["a"], read_mask={"paths": ["nope"]})
        )

    assert field_violations(raised.value) == ["read_mask"]


async def test_activity_lists_every_day_oldest_first_with_zeros(catalog, product, clean_db) -> None:  # type: ignore[no-untyped-def]
    await _load(catalog, [product("a"), product("b")])
    await catalog.SetProductStatus(
        pb.SetProductStatusRequest(product_ids=["a"], status=pb.PRODUCT_STATUS_WITHDRAWN)
    )
    today = datetime.now(UTC).date()
    rows = [
        ("a", today, 10, 4, 2, 1),
        ("a", today - timedelta(days=2), 7, 3, 0, 0),
        ("a", today - timedelta(days=6), 5, 0, 0, 0),  # the window's first day
        ("a", today - timedelta(days=7), 99, 99, 99, 99),  # just before it
        ("b", today - timedelta(days=1), 1, 1, 1, 1),  # another product
    ]
    with psycopg2.connect(clean_db) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO product_daily_counts"
            " (product_id, day, impressions, clicks, add_to_carts, purchases)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            rows,
        )
    conn.close()

    week = await catalog.GetProductActivity(pb.GetProductActivityRequest(product_id="a", days=7))
    default = await catalog.GetProductActivity(pb.GetProductActivityRequest(product_id="b"))

    got = [
        (
            d.day.ToDatetime(UTC),
            (d.impressions, d.clicks, d.add_to_carts, d.purchases),
        )
        for d in week.days
    ]
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
    counts = {0: (10, 4, 2, 1), 2: (7, 3, 0, 0), 6: (5, 0, 0, 0)}
    assert got == [
        (midnight - timedelta(days=back), counts.get(back, (0, 0, 0, 0)))
        for back in range(6, -1, -1)
    ]
    assert len(default.days) == 30
    assert [d.clicks for d in default.days[-3:]] == [0, 1, 0]
    assert default.days[0].day.ToDatetime(UTC) == midnight - timedelta(days=29)


async def test_activity_of_an_unknown_product_is_not_found(catalog) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await catalog.GetProductActivity(pb.GetProductActivityRequest(product_id="ghost"))

    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    assert "ghost" in (raised.value.details() or "")


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (pb.GetProductActivityRequest(product_id="a", days=91), ["days"]),
        (pb.GetProductActivityRequest(product_id="a", days=-1), ["days"]),
        (pb.GetProductActivityRequest(product_id="", days=7), ["product_id"]),
        (pb.GetProductActivityRequest(product_id="a\nb", days=100), ["product_id", "days"]),
    ],
)
async def test_malformed_activity_requests_name_the_field(catalog, request_, fields) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await catalog.GetProductActivity(request_)

    assert field_violations(raised.value) == fields
