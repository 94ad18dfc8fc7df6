"""GetProducts latency of the real catalog service, with the Redis cache cold and warm.

Creates a throwaway database (``magpie_bench_<random>``, dropped at the end),
starts ``python -m services.catalog`` against it and a Redis database of its
own, loads ``--products`` generated products through UpsertProducts, fills the
derived behaviour tables (each product counted on about a third of the last 30
days, plus a popularity row), then times ``GetProducts(--batch random ids)``
from a gRPC client on this machine:

* cold: the benchmark's Redis database is flushed before every request, so each
  one reads products and stats from PostgreSQL and fills the cache;
* warm: random batches from a pool of ids that the previous requests cached.

    python -m tools.bench.get_products                    # 100,000 products
    python -m tools.bench.get_products --products 20000   # quick look
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg2
import redis

from magpie.platform.local import free_port, wait_serving
from magpie.runtime import schema
from magpie.runtime.settings import ENV_PREFIX
from magpie.v1 import catalog_pb2 as pb
from magpie.v1 import catalog_pb2_grpc, common_pb2
from tools.bench._report import percentiles, write_report

REPO = Path(__file__).resolve().parents[2]
CATEGORIES = [
    ["Home", "Kitchen", "Knives"],
    ["Home", "Kitchen", "Pans"],
    ["Home", "Garden"],
    ["Sports", "Running", "Shoes"],
    ["Sports", "Cycling"],
    ["Books", "Fiction"],
    ["Electronics", "Audio", "Headphones"],
]
WARM_POOL = 2000


@contextlib.contextmanager
def catalog_process(database_url: str, redis_url: str, log: Path) -> Iterator[tuple[str, int]]:
    """The address and pid of a catalog service process running until the block ends."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env |= {
        "MAGPIE_DATABASE_URL": database_url,
        "MAGPIE_REDIS_URL": redis_url,
        "MAGPIE_PORT": str(port),
        "MAGPIE_LOG_LEVEL": "WARNING",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.catalog"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    address = f"127.0.0.1:{port}"
    try:
        if not wait_serving(address, timeout=30):
            raise SystemExit(f"catalog never became SERVING; see {log}")
        yield address, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def _product(i: int, rng: random.Random) -> pb.Product:
    return pb.Product(
        product_id=f"prod-{i:07d}",
        title=f"Product {i} {rng.choice(['red', 'blue', 'steel', 'oak'])}",
        description="Generated for the GetProducts benchmark. " * 4,
        category_path=rng.choice(CATEGORIES),
        tags=rng.sample(["sale", "new", "eco", "gift", "premium", "bundle"], 2),
        brand=rng.choice(["Acme", "Globex", "Initech", "Umbrella"]),
        price=common_pb2.Money(
            currency_code="EUR", units=rng.randint(1, 500), nanos=rng.choice([0, 990_000_000])
        ),
        rating=round(rng.uniform(0, 5), 1),
        stock=rng.randint(0, 50),
        attributes={"color": rng.choice(["red", "blue"]), "size": rng.choice(["S", "M", "L"])},
    )


def load(stub: catalog_pb2_grpc.CatalogServiceStub, n: int, rng: random.Random) -> float:
    started = time.perf_counter()
    for start in range(0, n, 1000):
        batch = [_product(i, rng) for i in range(start, min(n, start + 1000))]
        response = stub.UpsertProducts(pb.UpsertProductsRequest(products=batch), timeout=60)
        if not all(r.ok for r in response.results):
            raise SystemExit(f"upsert rejected products: {response.results}")
    return time.perf_counter() - started


def fill_stats(database_url: str) -> int:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO product_daily_counts
                (product_id, day, impressions, clicks, add_to_carts, purchases)
            SELECT product_id, current_date - d, 50, 5, 1, (random() < 0.2)::int
            FROM products, generate_series(0, 29) AS d WHERE random() < 0.33
            """
        )
        rows = cur.rowcount
        cur.execute(
            "INSERT INTO product_popularity (product_id, score, as_of)"
            " SELECT product_id, random() * 100, now() - interval '1 day' FROM products"
        )
    # what autovacuum would have done by now
    schema.execute_autocommit(database_url, "VACUUM ANALYZE")
    return rows


def timed(stub: catalog_pb2_grpc.CatalogServiceStub, ids: list[str]) -> float:
    started = time.perf_counter()
    response = stub.GetProducts(pb.GetProductsRequest(product_ids=ids), timeout=10)
    elapsed = (time.perf_counter() - started) * 1000
    if len(response.products) != len(ids):
        raise SystemExit(f"expected {len(ids)} products, got {len(response.products)}")
    return elapsed


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    args: argparse.Namespace,
    database_url: str,
    service: tuple[str, int],
    cache: redis.Redis,
) -> dict[str, Any]:
    address, pid = service
    rng = random.Random(args.seed)
    ids = [f"prod-{i:07d}" for i in range(args.products)]
    with grpc.insecure_channel(address) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        load_seconds = load(stub, args.products, rng)
        stats_rows = fill_stats(database_url)
        for _ in range(5):  # connections, code paths and PostgreSQL's buffers
            timed(stub, rng.sample(ids, args.batch))
        cold = []
        cpu_before = cpu_seconds(pid)
        for _ in range(args.requests):
            batch = rng.sample(ids, args.batch)
            cache.flushdb()
            cold.append(timed(stub, batch))
        cpu_cold = cpu_seconds(pid) - cpu_before
        pool = rng.sample(ids, max(WARM_POOL, args.batch))
        for start in range(0, len(pool), args.batch):
            timed(stub, pool[start : start + args.batch])
        cpu_before = cpu_seconds(pid)
        warm = [timed(stub, rng.sample(pool, args.batch)) for _ in range(args.requests)]
        cpu_warm = cpu_seconds(pid) - cpu_before
    load_average = os.getloadavg()[0]
    cold_ms, warm_ms = percentiles(cold, (50, 99)), percentiles(warm, (50, 99))
    return {
        "p50_ms_cold": round(cold_ms["p50"], 2),
        "p99_ms_cold": round(cold_ms["p99"], 2),
        "p50_ms_warm": round(warm_ms["p50"], 2),
        "p99_ms_warm": round(warm_ms["p99"], 2),
        "products": args.products,
        "batch": args.batch,
        "requests": args.requests,
        "service_cpu_ms_per_request_cold": round(cpu_cold * 1000 / args.requests, 2),
        "service_cpu_ms_per_request_warm": round(cpu_warm * 1000 / args.requests, 2),
        "daily_count_rows": stats_rows,
        "load_products_per_s": round(args.products / load_seconds),
        "load_average_1m": round(load_average, 2),
        "note": "client, service, PostgreSQL and Redis share this machine's cores",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/13",
        help="a Redis database the benchmark may flush",
    )
    args = parser.parse_args()
    if args.batch > args.products:
        parser.error("--batch must not exceed --products")

    cache = redis.Redis.from_url(args.redis_url)
    cache.flushdb()
    log = REPO / ".magpie" / "bench-catalog.log"
    log.parent.mkdir(exist_ok=True)
    with (
        schema.throwaway_database(args.postgres_url, "magpie_bench") as database_url,
        catalog_process(database_url, args.redis_url, log) as service,
    ):
        results = measure(args, database_url, service, cache)
    cache.flushdb()

    path = write_report("get_products", results)
    print(
        f"GetProducts({args.batch} random ids), {args.products:,} products, "
        f"{args.requests} requests each"
    )
    print(f"{'cache':<6} {'p50 ms':>8} {'p99 ms':>8} {'service CPU ms/req':>19}")
    for state in ("cold", "warm"):
        cpu = results[f"service_cpu_ms_per_request_{state}"]
        print(
            f"{state:<6} {results[f'p50_ms_{state}']:>8} {results[f'p99_ms_{state}']:>8} {cpu:>19}"
        )
    print(
        f"upsert: {results['load_products_per_s']:,} products/s; "
        f"load average {results['load_average_1m']}; written {path}"
    )


if __name__ == "__main__":
    main()
