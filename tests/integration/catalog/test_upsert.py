"""UpsertProducts and SetProductStatus through the real catalog server."""

from datetime import UTC, datetime

import grpc
import psycopg2
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from magpie.v1 import catalog_pb2 as pb
from magpie.v1 import common_pb2
from tests.support import field_violations

pytestmark = pytest.mark.integration


async def test_bad_items_are_rejected_and_the_rest_stored(catalog, product, clean_db) -> None:  # type: ignore[no-untyped-def]
    request = pb.UpsertProductsRequest(
        products=[
            product("good-1"),
            product("bad-currency", price=common_pb2.Money(currency_code="eur", units=1)),
            product("bad-stock", stock=-1),
            product("bad-category", category_path=["Home", "Pots > Pans"]),
            product("bad-title", title="  "),
            product("bad-rating", rating=5.5),
            product("good-2", category_path=[], price=None, tags=[], attributes={}),
            product("good-1", title="again"),
        ]
    )

    response = await catalog.UpsertProducts(request)

    assert [(r.id, r.ok) for r in response.results] == [
        ("good-1", True),
        ("bad-currency", False),
        ("bad-stock", False),
        ("bad-category", False),
        ("bad-title", False),
        ("bad-rating", False),
        ("good-2", True),
        ("good-1", False),
    ]
    errors = [r.error for r in response.results]
    assert errors[1].startswith("price: currency_code")
    assert errors[2].startswith("stock:")
    assert errors[3].startswith("category_path: [1]")
    assert errors[4].startswith("title:")
    assert errors[5].startswith("rating:")
    assert "duplicate of products[0]" in errors[7]
    assert errors[0] == errors[6] == ""
    with psycopg2.connect(clean_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT product_id, title FROM products ORDER BY product_id")
        assert cur.fetchall() == [("good-1", "Product good-1"), ("good-2", "Product good-2")]


async def test_round_trip_of_every_field(catalog, product) -> None:  # type: ignore[no-untyped-def]
    created = Timestamp()
    created.FromDatetime(datetime(2024, 5, 1, 12, 30, tzinfo=UTC))
    sent = product(
        "p1",
        category_path=["Home", "Kitchen", "Knives"],
        tags=["steel", "chef"],
        price=common_pb2.Money(currency_code="USD", units=1234, nanos=990_000_000),
        created_at=created,
        attributes={"color": "black", "size": "20cm"},
    )
    await catalog.UpsertProducts(pb.UpsertProductsRequest(products=[sent]))

    got = (await catalog.GetProducts(pb.GetProductsRequest(product_ids=["p1"]))).products[0]

    assert got.status == pb.PRODUCT_STATUS_ACTIVE
    assert got.updated_at.seconds > created.seconds
    got.ClearField("status")
    got.ClearField("updated_at")
    got.ClearField("stats")
    assert got == sent


async def test_upsert_keeps_status_and_creation_time(catalog, product) -> None:  # type: ignore[no-untyped-def]
    created = Timestamp(seconds=1_700_000_000)
    await catalog.UpsertProducts(
        pb.UpsertProductsRequest(products=[product("p1", created_at=created)])
    )
    await catalog.SetProductStatus(
        pb.SetProductStatusRequest(product_ids=["p1"], status=pb.PRODUCT_STATUS_HIDDEN)
    )

    await catalog.UpsertProducts(pb.UpsertProductsRequest(products=[product("p1", stock=0)]))
    response = await catalog.GetProducts(
        pb.GetProductsRequest(product_ids=["p1"], include_inactive=True)
    )

    (got,) = response.products
    assert got.status == pb.PRODUCT_STATUS_HIDDEN
    assert got.stock == 0
    assert got.created_at == created


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (pb.UpsertProductsRequest(), ["products"]),
        (
            pb.UpsertProductsRequest(products=[pb.Product(product_id=str(i)) for i in range(1001)]),
            ["products"],
        ),
        (
            pb.UpsertProductsRequest(
                products=[
                    pb.Product(product_id="a", title="t"),
                    pb.Product(product_id="b", title="t", created_at=Timestamp(seconds=10**12)),
                ]
            ),
            ["products[1].created_at"],
        ),
    ],
)
async def test_malformed_batches_name_the_field(catalog, request_, fields) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await catalog.UpsertProducts(request_)

    assert field_violations(raised.value) == fields


async def test_status_changes_report_unknown_ids(catalog, product) -> None:  # type: ignore[no-untyped-def]
    await catalog.UpsertProducts(pb.UpsertProductsRequest(products=[product("a"), product("b")]))

    response = await catalog.SetProductStatus(
        pb.SetProductStatusRequest(
            product_ids=["a", "nope", "b"], status=pb.PRODUCT_STATUS_WITHDRAWN
        )
    )
    after = await catalog.GetProducts(pb.GetProductsRequest(product_ids=["a", "b"]))
    await catalog.SetProductStatus(
        pb.SetProductStatusRequest(product_ids=["b"], status=pb.PRODUCT_STATUS_ACTIVE)
    )
    reactivated = await catalog.GetProducts(pb.GetProductsRequest(product_ids=["a", "b"]))

    assert [(r.id, r.ok, r.error) for r in response.results] == [
        ("a", True, ""),
        ("nope", False, "not found"),
        ("b", True, ""),
    ]
    assert list(after.products) == []
    assert list(after.missing_product_ids) == ["a", "b"]
    assert [p.product_id for p in reactivated.products] == ["b"]
    assert list(reactivated.missing_product_ids) == ["a"]


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (pb.SetProductStatusRequest(product_ids=["a"]), ["status"]),
        (
            pb.SetProductStatusRequest(product_ids=[], status=pb.PRODUCT_STATUS_HIDDEN),
            ["product_ids"],
        ),
        (
            pb.SetProductStatusRequest(product_ids=["a", ""], status=pb.PRODUCT_STATUS_HIDDEN),
            ["product_ids[1]"],
        ),
    ],
)
async def test_malformed_status_changes_name_the_field(catalog, request_, fields) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await catalog.SetProductStatus(request_)

    assert field_violations(raised.value) == fields
