"""Values PostgreSQL cannot hold (NUL, other control characters) fail one product, or the
read that carries them, with a reason; never a whole batch with INTERNAL."""

from __future__ import annotations

import base64
import json
import math

import grpc
import psycopg2
import pytest

from magpie.v1 import catalog_pb2 as pb
from magpie.v1 import common_pb2
from services.catalog.service import ProductQuery
from tests.support import field_violations

pytestmark = pytest.mark.integration


async def test_control_characters_fail_their_product_alone(catalog, product, clean_db) -> None:  # type: ignore[no-untyped-def]
    request = pb.UpsertProductsRequest(
        products=[
            product("nul-title", title="Pan\x00"),
            product("tab-title", title="Pan\tlid"),
            product("nul-description", description="Heavy\x00"),
            product("nul-brand", brand="Ac\x00me"),
            product("nul-tag", tags=["steel", "\x00"]),
            product("nul-category", category_path=["Home", "Kit\x00chen"]),
            product("nul-attribute-key", attributes={"co\x00lor": "red"}),
            product("nul-attribute-value", attributes={"color": "r\x00ed"}),
            product("bell-in-value", attributes={"note": "ding\x07"}),
            product("negative-price", price=common_pb2.Money(currency_code="EUR", units=-1)),
            product("nan-rating", rating=math.nan),
            product("multiline", description="Line 1\r\n\tLine 2", attributes={"a": "x\ny"}),
            product("huge-stock", stock=2**63 - 1),
        ]
    )

    response = await catalog.UpsertProducts(request)

    rejected = {r.id: r.error for r in response.results if not r.ok}
    assert set(rejected) == {
        "nul-title",
        "tab-title",
        "nul-description",
        "nul-brand",
        "nul-tag",
        "nul-category",
        "nul-attribute-key",
        "nul-attribute-value",
        "bell-in-value",
        "negative-price",
        "nan-rating",
    }
    assert rejected["nul-title"] == "title: must not contain control characters (U+0000 at 3)"
    assert rejected["tab-title"].startswith("title: must not contain control characters")
    assert rejected["nul-description"].startswith("description: must not contain control")
    assert rejected["nul-brand"].startswith("brand: must not contain control")
    assert rejected["nul-tag"].startswith("tags: [1] must not contain control")
    assert rejected["nul-category"].startswith("category_path: [1] must not contain control")
    assert rejected["nul-attribute-key"].startswith("attributes: key ")
    assert rejected["nul-attribute-value"].startswith("attributes: ['color'] must not contain")
    assert rejected["negative-price"].startswith("price: units")
    assert rejected["nan-rating"].startswith("rating:")
    with psycopg2.connect(clean_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT product_id, description, stock FROM products ORDER BY 1")
        assert cur.fetchall() == [
            ("huge-stock", "A thing", 2**63 - 1),
            ("multiline", "Line 1\r\n\tLine 2", 3),
        ]


@pytest.mark.parametrize(
    ("product_filter", "field"),
    [
        (common_pb2.ProductFilter(brands=["Ac\x00me"]), "filter.brands[0]"),
        (
            common_pb2.ProductFilter(category_prefixes=["Home > Kit\x00"]),
            "filter.category_prefixes[0]",
        ),
    ],
)
async def test_a_list_filter_with_control_characters_is_invalid(  # type: ignore[no-untyped-def]
    catalog, product_filter: common_pb2.ProductFilter, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await catalog.ListProducts(pb.ListProductsRequest(filter=product_filter))

    assert field_violations(raised.value) == [field]


async def test_a_forged_page_token_is_invalid(catalog) -> None:  # type: ignore[no-untyped-def]
    payload = {"v": 1, "after": "p\x00", "f": ProductQuery().fingerprint()}
    token = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await catalog.ListProducts(pb.ListProductsRequest(page_token=token))

    assert field_violations(raised.value) == ["page_token"]
