"""Ranking's product cache against a real catalog server: Recommend's lookups reuse the
facts fetched before (through a catalog outage too), Rank's read the catalog's current
ones, and a product the catalog does not return is asked for again."""

from __future__ import annotations

import grpc
import pytest
from prometheus_client import REGISTRY

from magpie.runtime.errors import Unavailable
from magpie.runtime.server import start_server
from magpie.runtime.settings import Settings
from magpie.v1 import catalog_pb2 as pb
from magpie.v1 import catalog_pb2_grpc
from services.catalog.server import build_spec
from services.ranking.downstream import CatalogClient
from services.ranking.product_cache import ProductCache
from tests.integration.catalog.conftest import ProductFactory

pytestmark = pytest.mark.integration


def _lookups() -> dict[str, float]:
    """Ranking's product-cache lookups so far, by result (the process's metric)."""
    return {
        result: REGISTRY.get_sample_value(
            "magpie_cache_requests_total", {"namespace": "ranking_products", "result": result}
        )
        or 0.0
        for result in ("hit", "miss")
    }


async def test_recommend_reuses_fetched_facts_and_rank_reads_the_catalog(
    settings: Settings, product: ProductFactory
) -> None:
    running = await start_server(build_spec(settings), settings)
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
            await catalog.UpsertProducts(
                pb.UpsertProductsRequest(products=[product("a"), product("b")])
            )
            client = CatalogClient(channel, ProductCache(300.0, 100))
            before = _lookups()

            first = await client.products(["a", "b", "gone"], cached=True)
            await catalog.UpsertProducts(
                pb.UpsertProductsRequest(products=[product("a", title="Renamed")])
            )
            kept = await client.products(["a", "b"], cached=True)
            counted = _lookups()
            fresh = await client.products(["a"], cached=False)
            await running.stop(0)
            running = None
            during_outage = await client.products(["b", "a"], cached=True)
            with pytest.raises(Unavailable):
                await client.products(["a", "gone"], cached=True)  # "gone" is asked again
    finally:
        if running is not None:
            await running.stop(0)

    assert set(first) == {"a", "b"}
    assert kept["a"].title == first["a"].title == "Product a"
    assert fresh["a"].title == "Renamed"
    assert during_outage == kept
    assert counted["miss"] - before["miss"] == 3  # a, b, gone
    assert counted["hit"] - before["hit"] == 2  # a, b
