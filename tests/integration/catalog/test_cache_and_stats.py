"""The Redis cache, health, and behaviour statistics of the real catalog server."""

from datetime import UTC, datetime, timedelta

import grpc
import psycopg2
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from magpie.runtime.cache import Cache
from magpie.runtime.settings import Settings
from magpie.v1 import catalog_pb2 as pb
from magpie.v1 import catalog_pb2_grpc
from services.catalog.server import SERVICE_NAME, build_spec
from tests.support import free_port

pytestmark = pytest.mark.integration


def _sql(url: str, statement: str, params: tuple[object, ...] = ()) -> None:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement, params)


async def _title(catalog, product_id: str) -> str:  # type: ignore[no-untyped-def]
    response = await catalog.GetProducts(pb.GetProductsRequest(product_ids=[product_id]))
    return "".join(p.title for p in response.products)


async def test_reads_are_cached_until_a_write_invalidates(
    catalog, product, clean_db, redis_url, settings
) -> None:  # type: ignore[no-untyped-def]
    await catalog.UpsertProducts(pb.UpsertProductsRequest(products=[product("p1", title="v1")]))
    first = await _title(catalog, "p1")
    cached = redis.Redis.from_url(redis_url).exists(f"{settings.cache_prefix}catalog:p:p1")
    _sql(clean_db, "UPDATE products SET title = 'behind its back' WHERE product_id = 'p1'")
    from_cache = await _title(catalog, "p1")

    await catalog.UpsertProducts(pb.UpsertProductsRequest(products=[product("p1", title="v2")]))
    after_upsert = await _title(catalog, "p1")
    await catalog.SetProductStatus(
        pb.SetProductStatusRequest(product_ids=["p1"], status=pb.PRODUCT_STATUS_HIDDEN)
    )
    after_hiding = await _title(catalog, "p1")

    assert (first, cached, from_cache) == ("v1", 1, "v1")
    assert after_upsert == "v2"
    assert after_hiding == ""


async def test_guarded_set_skips_keys_whose_guard_changed(redis_url: str) -> None:
    cache = Cache(redis_url, prefix="magpie:db:", namespace="test", ttl_seconds=60)
    await cache.set_many({"g-same": b"1", "g-moved": b"2"})
    try:
        await cache.set_many_guarded(
            {"a": b"A", "b": b"B", "c": b"C", "d": b"D"},
            {
                "a": ("g-same", b"1"),  # unchanged: set
                "b": ("g-moved", b"1"),  # changed since read: skipped
                "c": ("g-none", None),  # still absent: set
                "d": ("g-same", None),  # appeared since read: skipped
            },
        )
        values = await cache.get_many(["a", "b", "c", "d"])
    finally:
        await cache.close()

    assert values == {"a": b"A", "c": b"C"}
    assert 0 < redis.Redis.from_url(redis_url).ttl("magpie:db:test:a") <= 60


async def test_reads_work_without_redis(settings: Settings, serve, product) -> None:  # type: ignore[no-untyped-def]
    settings = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    running = await serve(build_spec(settings), settings)
    async with grpc.aio.insecure_channel(running.address) as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        upserted = await catalog.UpsertProducts(
            pb.UpsertProductsRequest(products=[product("p1"), product("p2")])
        )
        reads = [
            await catalog.GetProducts(pb.GetProductsRequest(product_ids=["p2", "p1", "x"]))
            for _ in range(2)
        ]
        listed = await catalog.ListProducts(pb.ListProductsRequest())
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        )

    assert all(r.ok for r in upserted.results)
    for read in reads:
        assert [p.product_id for p in read.products] == ["p2", "p1"]
        assert list(read.missing_product_ids) == ["x"]
    assert [p.product_id for p in listed.products] == ["p1", "p2"]
    assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_health_follows_postgresql(settings: Settings, serve) -> None:  # type: ignore[no-untyped-def]
    settings = settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/none"}
    )
    running = await serve(build_spec(settings), settings)
    async with grpc.aio.insecure_channel(running.address) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        )

    assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_stats_sum_utc_day_windows_and_decay_popularity(catalog, product, clean_db) -> None:  # type: ignore[no-untyped-def]
    await catalog.UpsertProducts(
        pb.UpsertProductsRequest(products=[product("p1"), product("quiet")])
    )
    today = datetime.now(UTC).date()
    rows = [  # days back -> clicks (purchases are a tenth); impressions never count
        (0, 10),
        (1, 20),
        (6, 40),
        (7, 80),
        (29, 160),
        (30, 320),
        (-1, 640),  # a day in the future is outside every window
    ]
    for back, clicks in rows:
        _sql(
            clean_db,
            "INSERT INTO product_daily_counts (product_id, day, impressions, clicks, purchases)"
            " VALUES ('p1', %s, 99999, %s, %s)",
            (today - timedelta(days=back), clicks, clicks // 10),
        )
    _sql(
        clean_db,
        "INSERT INTO product_popularity (product_id, score, as_of) VALUES ('p1', 8, %s)",
        (datetime.now(UTC) - timedelta(days=14),),
    )

    got = await catalog.GetProducts(pb.GetProductsRequest(product_ids=["p1", "quiet"]))
    listed = await catalog.ListProducts(pb.ListProductsRequest())

    stats, quiet = got.products[0].stats, got.products[1].stats
    assert (stats.clicks_1d, stats.clicks_7d, stats.clicks_30d) == (10, 70, 310)
    assert (stats.views_1d, stats.views_7d, stats.views_30d) == (10, 70, 310)
    assert (stats.purchases_1d, stats.purchases_7d, stats.purchases_30d) == (1, 7, 31)
    assert stats.popularity == pytest.approx(2.0, rel=1e-4)  # two half-lives
    assert quiet == pb.ProductStats()
    listed_stats = listed.products[0].stats
    assert listed_stats.popularity == pytest.approx(stats.popularity, rel=1e-6)
    listed_stats.ClearField("popularity")
    stats.ClearField("popularity")
    assert listed_stats == stats
    assert listed.products[1].stats == quiet
