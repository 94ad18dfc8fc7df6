"""Recommend under load: latency percentiles and throughput per offered rate, the hops
that make up one call, and the ratio to a bare gRPC health-check round trip.

    python -m tools.bench.serving [--products 5000 --users 2000 --events 150000]
                                  [--levels 10,25,50,75] [--seconds 20]

The benchmark brings up an isolated platform (five services, tritonserver, a fresh
PostgreSQL database, Redis) with `LocalPlatform`, loads a synthetic world through the
public APIs, trains and promotes a model, and then runs the load generator as a
separate process (so it does not share the services' interpreters). Load is open
loop: requests start on a fixed schedule whatever the latency, 500 candidates ranked
per call (the ranking service's default). Hops are measured one at a time, unloaded,
with the same payloads Recommend sends. Per level, the CPU each process used per
request is read from /proc (where the two cores go), and so is the CPU of one bare
health-check call on each side. Writes bench-results/serving.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tools.bench._load import Outcome, Recommender, open_loop, run_generator, start_times
from tools.bench._platform import cpu_seconds, trained_platform, with_descendants
from tools.bench._report import percentiles, write_report

_WARMUP = 5


async def _timed(call: Callable[[], Awaitable[Any]], repeat: int) -> float:
    """p50 in ms of `repeat` sequential calls (after a few warm-up calls)."""
    for _ in range(_WARMUP):
        await call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return round(float(np.median(samples)), 2)


def _machine_busy_idle() -> tuple[int, int]:
    """Busy and idle CPU ticks of the whole machine so far (/proc/stat)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks[:8]) - idle, idle


def _ranker_inputs(job: dict[str, Any]) -> tuple[NDArray[Any], ...]:
    """History, candidates, context and co-visitation features of one ranker call, shaped
    as the ranking service sends them for 500 candidates."""
    from magpie.contract.covisitation import Covisitation
    from magpie.contract.signature import CONTEXT_DIM, HISTORY_LEN
    from magpie.modelstore.bundle import COVISITATION

    history = np.zeros((1, HISTORY_LEN), dtype=np.int64)
    history[0, -20:] = np.arange(2, 22)
    candidate_ids = np.arange(2, 502, dtype=np.int64)[None, :] % job["vocab"]
    context = np.zeros((1, CONTEXT_DIM), dtype=np.float32)
    with np.load(Path(job["bundle"]) / COVISITATION) as arrays:
        features = Covisitation.from_arrays(arrays).features(history, candidate_ids)
    return history, candidate_ids, context, features


async def _hops(
    job: dict[str, Any], profiles: Any, retrieval: Any, catalog: Any, ranker: Any
) -> dict[str, float]:
    """p50 ms of each hop Recommend makes, one at a time, unloaded, with its payloads."""
    from magpie.v1 import catalog_pb2, profiles_pb2, retrieval_pb2

    user = job["users"][0]
    profile = (await profiles.GetProfile(profiles_pb2.GetProfileRequest(user_id=user))).profile
    recent = [i.product_id for i in profile.recent_interactions]
    candidates = await retrieval.Retrieve(
        retrieval_pb2.RetrieveRequest(user_id=user, limit=500, recent_product_ids=recent)
    )
    pool = [c.product_id for c in candidates.candidates[:60]]
    history, candidate_ids, context, features = _ranker_inputs(job)
    repeat = job["hop_repeat"]
    return {
        "profiles.GetProfile": await _timed(
            lambda: profiles.GetProfile(profiles_pb2.GetProfileRequest(user_id=user)), repeat
        ),
        "retrieval.Retrieve(500)": await _timed(
            lambda: retrieval.Retrieve(
                retrieval_pb2.RetrieveRequest(user_id=user, limit=500, recent_product_ids=recent)
            ),
            repeat,
        ),
        "catalog.GetProducts(60)": await _timed(
            lambda: catalog.GetProducts(catalog_pb2.GetProductsRequest(product_ids=pool)), repeat
        ),
        "triton.ranker(500)": await _timed(
            lambda: ranker.score(history, candidate_ids, context, features, version=job["version"]),
            repeat,
        ),
    }


async def _health_baseline(
    health: Any, ranking_pids: list[int], repeat: int
) -> tuple[float, dict[str, int]]:
    """p50 ms of a bare gRPC health check on the ranking service, and the CPU (us) one such
    call costs the server and this client."""
    from grpc_health.v1 import health_pb2

    own_pid = [os.getpid()]
    server_cpu, client_cpu = cpu_seconds(ranking_pids), cpu_seconds(own_pid)
    p50 = await _timed(lambda: health.Check(health_pb2.HealthCheckRequest()), repeat)
    calls = repeat + _WARMUP
    cpu_us = {
        "server": round((cpu_seconds(ranking_pids) - server_cpu) * 1e6 / calls),
        "client": round((cpu_seconds(own_pid) - client_cpu) * 1e6 / calls),
    }
    return p50, cpu_us


async def _run_level(
    rps: float,
    seconds: float,
    recommend: Callable[[str], Coroutine[Any, Any, Outcome]],
    pick_user: Callable[[], str],
    processes: dict[str, list[int]],
) -> dict[str, Any]:
    """One offered rate for ``seconds``, with the CPU each process and the machine used."""
    starts = start_times(rps, seconds)
    total = len(starts)
    cpu_before = {name: cpu_seconds(pids) for name, pids in processes.items()}
    busy_before, idle_before = _machine_busy_idle()
    outcomes, elapsed = await open_loop(starts, lambda: recommend(pick_user()))
    busy_after, idle_after = _machine_busy_idle()
    busy, idle = busy_after - busy_before, idle_after - idle_before
    cpu_ms = {
        name: round((cpu_seconds(pids) - cpu_before[name]) * 1000 / total, 2)
        for name, pids in processes.items()
    }
    return _summarise_level(rps, outcomes, elapsed, cpu_ms, busy / max(busy + idle, 1))


def _summarise_level(
    rps: float,
    outcomes: list[Outcome],
    elapsed: float,
    cpu_ms: dict[str, float],
    busy_share: float,
) -> dict[str, Any]:
    """The JSON record of one level."""
    latencies = [ms for ms, _ in outcomes if ms is not None]
    return {
        "rps_offered": rps,
        "rps_achieved": round(len(latencies) / elapsed, 1),
        **{f"{key}_ms": round(value, 2) for key, value in percentiles(latencies).items()},
        "errors": sum(ms is None for ms, _ in outcomes),
        "degraded": sum(degraded for _, degraded in outcomes),
        "requests": len(outcomes),
        "cpu_ms_per_request": {**cpu_ms, "total": round(sum(cpu_ms.values()), 2)},
        "machine_busy_share": round(busy_share, 2),
    }


async def _generate(job: dict[str, Any]) -> dict[str, Any]:
    """The load generator (runs in its own process): the hops and the health-check
    baseline unloaded, then each offered rate in turn."""
    import grpc
    from grpc_health.v1 import health_pb2_grpc

    from magpie.modelstore.client import RankerClient
    from magpie.v1 import (
        catalog_pb2_grpc,
        profiles_pb2_grpc,
        ranking_pb2,
        ranking_pb2_grpc,
        retrieval_pb2_grpc,
    )

    users: list[str] = job["users"]
    rng = random.Random(0)
    channels = {name: grpc.aio.insecure_channel(addr) for name, addr in job["addresses"].items()}
    ranking = ranking_pb2_grpc.RankingServiceStub(channels["ranking"])
    health = health_pb2_grpc.HealthStub(channels["ranking"])
    profiles = profiles_pb2_grpc.ProfileServiceStub(channels["profiles"])
    retrieval = retrieval_pb2_grpc.RetrievalServiceStub(channels["retrieval"])
    catalog = catalog_pb2_grpc.CatalogServiceStub(channels["catalog"])
    ranker = RankerClient(job["triton"], job["triton_model"], 5.0)

    hops = await _hops(job, profiles, retrieval, catalog, ranker)
    health_p50, health_cpu_us = await _health_baseline(
        health, job["processes"]["ranking"], job["hop_repeat"]
    )
    recommend_p50 = await _timed(
        lambda: ranking.Recommend(ranking_pb2.RecommendRequest(user_id=rng.choice(users), k=10)),
        job["hop_repeat"],
    )

    recommend = Recommender(ranking, ranking_pb2.RecommendRequest, grpc.aio.AioRpcError)
    processes: dict[str, list[int]] = {**job["processes"], "load generator": [os.getpid()]}
    levels = []
    for rps in job["levels"]:
        levels.append(
            await _run_level(rps, job["seconds"], recommend, lambda: rng.choice(users), processes)
        )
        await asyncio.sleep(2.0)
    await ranker.close()
    for channel in channels.values():
        await channel.close()
    return {
        "levels": levels,
        "health_rtt_p50_ms": health_p50,
        "health_cpu_us_per_call": health_cpu_us,
        "recommend_unloaded_p50_ms": recommend_p50,
        "p50_ratio_to_health_rtt": round(recommend_p50 / health_p50, 1),
        "hops_p50_ms": hops,
    }


def _platform_run(args: argparse.Namespace) -> dict[str, Any]:
    from magpie.datasets import synthetic
    from magpie.platform.demo import demo_world
    from magpie.platform.local import SERVICES

    world = dataclasses.replace(demo_world(args.products, args.users, args.events), name="bench")
    dataset = synthetic.generate(world)
    with (
        tempfile.TemporaryDirectory(prefix="magpie-serving-") as state,
        trained_platform(
            Path(state), dataset, settings={"MAGPIE_LOG_LEVEL": "WARNING"}
        ) as platform,
    ):
        local, settings, version = platform.local, platform.settings, platform.version
        bundle = Path(settings.artifact_dir) / str(version)
        vocab = len(json.loads((bundle / "vocab.json").read_text())["item_ids"])
        job = {
            "bundle": str(bundle),
            "addresses": {n: local.layout.address(n) for n in SERVICES},
            "triton": settings.triton_addr,
            "triton_model": settings.triton_model,
            "version": str(version),
            "vocab": vocab + 2,
            "users": [u.user_id for u in dataset.users],
            "levels": args.levels,
            "seconds": args.seconds,
            "hop_repeat": args.hop_repeat,
            "processes": {n: with_descendants(pid) for n, pid in local.running().items()},
        }
        result = run_generator("tools.bench.serving", job)
    result["world"] = {"products": args.products, "users": args.users, "events": args.events}
    result["candidates"] = 500
    result["load_generator"] = "separate process, open loop, one grpc.aio channel"
    return result


def _print(result: dict[str, Any]) -> None:
    header = ("offered rps", "achieved", "p50 ms", "p95 ms", "p99 ms", "errors", "degraded")
    print(" ".join(f"{h:>11}" for h in header))
    for level in result["levels"]:
        keys = ("rps_offered", "rps_achieved", "p50_ms", "p95_ms", "p99_ms", "errors", "degraded")
        print(" ".join(f"{level[k]:>11}" for k in keys))
    print(
        f"\nhealth-check RTT p50 {result['health_rtt_p50_ms']} ms; unloaded Recommend p50 "
        f"{result['recommend_unloaded_p50_ms']} ms = {result['p50_ratio_to_health_rtt']}x"
    )
    cpu = result["health_cpu_us_per_call"]
    print(
        f"one bare gRPC call: {cpu['client']} us CPU in the client, {cpu['server']} in the server"
    )
    for hop, ms in result["hops_p50_ms"].items():
        print(f"  {hop:<26} p50 {ms} ms")
    print("\nCPU ms per request by process, and the machine's busy share (all cores):")
    names = list(result["levels"][0]["cpu_ms_per_request"])
    print(f"{'offered rps':>11} " + " ".join(f"{n[:12]:>12}" for n in names) + "   busy")
    for level in result["levels"]:
        cpu = level["cpu_ms_per_request"]
        row = " ".join(f"{cpu[n]:>12}" for n in names)
        print(f"{level['rps_offered']:>11} {row}   {level['machine_busy_share']:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--products", type=int, default=5_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument(
        "--levels", type=lambda s: [int(x) for x in s.split(",")], default=[10, 25, 50, 75]
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--hop-repeat", type=int, default=200)
    args = parser.parse_args()
    if args.generate:
        print(json.dumps(asyncio.run(_generate(json.loads(sys.stdin.read())))))
        return
    result = _platform_run(args)
    _print(result)
    print(f"wrote {write_report('serving', result)}")


if __name__ == "__main__":
    main()
