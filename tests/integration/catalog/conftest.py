"""Fixtures of the catalog tests: a real catalog server and a product builder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from magpie.runtime.settings import Settings
from magpie.v1 import catalog_pb2 as pb
from magpie.v1 import catalog_pb2_grpc, common_pb2
from services.catalog.server import build_spec

ProductFactory = Callable[..., pb.Product]


def _product(product_id: str, **fields: Any) -> pb.Product:
    """A valid product; keyword arguments override its fields."""
    values: dict[str, Any] = {
        "title": f"Product {product_id}",
        "description": "A thing",
        "category_path": ["Home", "Kitchen"],
        "tags": ["steel"],
        "brand": "Acme",
        "price": common_pb2.Money(currency_code="EUR", units=10, nanos=500_000_000),
        "rating": 4.5,
        "stock": 3,
        "attributes": {"color": "red"},
    }
    values.update(fields)
    return pb.Product(product_id=product_id, **values)


@pytest.fixture
def product() -> ProductFactory:
    return _product


@pytest.fixture
async def catalog(
    settings: Settings, serve: Callable[..., Any]
) -> AsyncIterator[catalog_pb2_grpc.CatalogServiceStub]:
    """A stub talking to a real catalog server on real PostgreSQL and Redis."""
    running = await serve(build_spec(settings), settings)
    async with grpc.aio.insecure_channel(running.address) as channel:
        yield catalog_pb2_grpc.CatalogServiceStub(channel)
