"""Soak: the whole platform under a steady mixed load for minutes, watching every
process's memory for growth.

    python -m tools.bench.soak [--seconds 300] [--rps 20] [--no-workers]

An isolated platform (five services, tritonserver, the retraining worker and beat, a
fresh PostgreSQL database, Redis db 10) is brought up with a trained model as the serving
benchmark does; then a load generator in its own process sends, open loop, Recommend at
``--rps`` plus a feedback stream (RecordEvents of new click events) and GetProfile and
GetProducts reads, for ``--seconds``. Meanwhile this process samples each process's
resident memory (VmRSS from /proc/PID/status, its children included: Triton's Python
stubs, Celery's pool) every ``--sample-seconds``; after a warm-up the growth is the
least-squares slope of those samples, in MiB per minute. Errors are calls that ended in
a non-OK status; degraded Recommend answers are counted apart. Retraining is disabled
(no schedule, no event threshold), so the worker idles. Writes bench-results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from tools.bench._load import REQUEST_TIMEOUT, Outcome, Recommender, open_loop, start_times
from tools.bench._platform import rss_mb, trained_platform, with_descendants
from tools.bench._report import percentiles, write_report

REDIS_URL = "redis://127.0.0.1:6379/10"
"""The platform's cache, broker and result backend: one Redis database of its own."""
EVENTS_PER_CALL = 4
PRODUCTS_PER_READ = 20


async def _timed(call: Callable[[], Awaitable[Any]], rpc_error: type[Exception]) -> Outcome:
    """One call's latency in ms, or None when it ended in a non-OK status."""
    started = time.perf_counter()
    try:
        await call()
    except rpc_error:
        return None, False
    return (time.perf_counter() - started) * 1000, False


async def _generate(job: dict[str, Any]) -> dict[str, Any]:
    """The load generator (runs in its own process): every stream on its own open-loop
    schedule, all at once, for ``job["seconds"]``; the outcomes per RPC."""
    import grpc

    from magpie.v1 import (
        catalog_pb2,
        catalog_pb2_grpc,
        common_pb2,
        feedback_pb2,
        feedback_pb2_grpc,
        profiles_pb2,
        profiles_pb2_grpc,
        ranking_pb2,
        ranking_pb2_grpc,
    )

    users: list[str] = job["users"]
    products: list[str] = job["products"]
    rng = random.Random(0)
    event_ids = itertools.count()
    rejected = 0
    error = grpc.aio.AioRpcError
    channels = {name: grpc.aio.insecure_channel(addr) for name, addr in job["addresses"].items()}
    recommend = Recommender(
        ranking_pb2_grpc.RankingServiceStub(channels["ranking"]),
        ranking_pb2.RecommendRequest,
        error,
    )
    feedback = feedback_pb2_grpc.FeedbackServiceStub(channels["feedback"])
    profiles = profiles_pb2_grpc.ProfileServiceStub(channels["profiles"])
    catalog = catalog_pb2_grpc.CatalogServiceStub(channels["catalog"])

    async def record() -> None:
        nonlocal rejected
        events = [
            feedback_pb2.Event(
                event_id=f"soak-{next(event_ids)}",
                user_id=rng.choice(users),
                product_id=rng.choice(products),
                event_type=common_pb2.EVENT_TYPE_CLICK,
            )
            for _ in range(EVENTS_PER_CALL)
        ]
        reply = await feedback.RecordEvents(
            feedback_pb2.RecordEventsRequest(events=events), timeout=REQUEST_TIMEOUT
        )
        rejected += reply.rejected

    def get_profile() -> Awaitable[Any]:
        request = profiles_pb2.GetProfileRequest(user_id=rng.choice(users))
        return profiles.GetProfile(request, timeout=REQUEST_TIMEOUT)

    def get_products() -> Awaitable[Any]:
        request = catalog_pb2.GetProductsRequest(
            product_ids=rng.sample(products, PRODUCTS_PER_READ)
        )
        return catalog.GetProducts(request, timeout=REQUEST_TIMEOUT)

    streams: dict[str, tuple[float, Callable[[], Awaitable[Outcome]]]] = {
        "Recommend": (job["rps"], lambda: recommend(rng.choice(users))),
        "RecordEvents": (job["feedback_rps"], lambda: _timed(record, error)),
        "GetProfile": (job["read_rps"], lambda: _timed(get_profile, error)),
        "GetProducts": (job["read_rps"], lambda: _timed(get_products, error)),
    }
    runs = await asyncio.gather(
        *(open_loop(start_times(rate, job["seconds"]), call) for rate, call in streams.values())
    )
    for channel in channels.values():
        await channel.close()
    result: dict[str, Any] = {"rejected_events": rejected, "rpcs": {}}
    for name, (outcomes, elapsed) in zip(streams, runs, strict=True):
        latencies = [ms for ms, _ in outcomes if ms is not None]
        p = percentiles(latencies, (50, 99))
        result["rpcs"][name] = {
            "requests": len(outcomes),
            "errors": sum(ms is None for ms, _ in outcomes),
            "degraded": sum(degraded for _, degraded in outcomes),
            "rps_achieved": round(len(latencies) / elapsed, 1),
            "p50_ms": round(p["p50"], 2),
            "p99_ms": round(p["p99"], 2),
        }
    return result


def rss_slopes(
    times_s: list[float], rss: dict[str, list[float]], warmup_s: float
) -> dict[str, float]:
    """Least-squares slope of each process's RSS (MiB) per minute over the samples taken
    after ``warmup_s``; NaN for a process with fewer than two such samples."""
    after = np.asarray(times_s) >= warmup_s
    minutes = np.asarray(times_s)[after] / 60.0
    slopes = {}
    for name, series in rss.items():
        values = np.asarray(series)[after]
        fits = minutes.size >= 2 and np.ptp(minutes) > 0
        slopes[name] = float(np.polyfit(minutes, values, 1)[0]) if fits else float("nan")
    return slopes


def _sample_while(
    generator: subprocess.Popen[str], processes: dict[str, int], period: float
) -> tuple[list[float], dict[str, list[float]]]:
    """RSS (MiB) of each process and its children every ``period`` seconds until the
    generator exits: the sample times (seconds from the first) and the series."""
    times: list[float] = []
    series: dict[str, list[float]] = {name: [] for name in processes}
    started = time.monotonic()
    while generator.poll() is None:
        times.append(time.monotonic() - started)
        for name, pid in processes.items():
            series[name].append(rss_mb(with_descendants(pid)))
        time.sleep(max(0.0, started + len(times) * period - time.monotonic()))
    return times, series


def _run(args: argparse.Namespace) -> dict[str, Any]:
    import redis

    from magpie.datasets import synthetic
    from magpie.platform.demo import demo_world
    from magpie.platform.local import SERVICES

    redis.Redis.from_url(REDIS_URL).flushdb()  # no cache entries of an earlier run
    world = synthetic.generate(demo_world())
    settings = {
        "MAGPIE_LOG_LEVEL": "WARNING",
        "MAGPIE_BROKER_URL": REDIS_URL,
        "MAGPIE_RESULT_BACKEND": REDIS_URL,
        "MAGPIE_RETRAIN_EVENT_THRESHOLD": "0",
        "MAGPIE_RETRAIN_SCHEDULE_SECONDS": "0",
    }
    with (
        tempfile.TemporaryDirectory(prefix="magpie-soak-") as state,
        trained_platform(
            Path(state), world, settings=settings, redis_url=REDIS_URL, workers=args.workers
        ) as platform,
    ):
        local = platform.local
        job = {
            "addresses": {n: local.layout.address(n) for n in SERVICES},
            "users": [u.user_id for u in world.users],
            "products": [i.item_id for i in world.items],
            "seconds": args.seconds,
            "rps": args.rps,
            "feedback_rps": args.feedback_rps,
            "read_rps": args.read_rps,
        }
        processes = local.running()
        generator = subprocess.Popen(
            [sys.executable, "-m", "tools.bench.soak", "--generate"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert generator.stdin is not None and generator.stdout is not None
        generator.stdin.write(json.dumps(job))
        generator.stdin.close()
        times, rss = _sample_while(generator, processes, args.sample_seconds)
        output = generator.stdout.read()
        if generator.wait() != 0:
            raise RuntimeError(f"the load generator failed (exit {generator.returncode})")
        load: dict[str, Any] = json.loads(output)
    return _summarise(args, load, times, rss)


def _summarise(
    args: argparse.Namespace, load: dict[str, Any], times: list[float], rss: dict[str, list[float]]
) -> dict[str, Any]:
    rpcs = load["rpcs"]
    slopes = rss_slopes(times, rss, args.warmup_seconds)
    after = [i for i, t in enumerate(times) if t >= args.warmup_seconds]
    return {
        "soak_seconds": args.seconds,
        "soak_requests": sum(r["requests"] for r in rpcs.values()),
        "soak_errors": sum(r["errors"] for r in rpcs.values()),
        "soak_degraded": rpcs["Recommend"]["degraded"],
        "soak_rejected_events": load["rejected_events"],
        "recommend_p50_ms": rpcs["Recommend"]["p50_ms"],
        "recommend_p99_ms": rpcs["Recommend"]["p99_ms"],
        "rpcs": rpcs,
        "rss_slope_mb_per_min": {
            **{name: round(slope, 3) for name, slope in slopes.items()},
            "max": round(max(slopes.values()), 3),
        },
        "rss_mb_after_warmup": {
            name: {"first": round(series[after[0]], 1), "last": round(series[after[-1]], 1)}
            for name, series in rss.items()
        }
        if after
        else {},
        "rss_samples": len(times),
        "sample_seconds": args.sample_seconds,
        "warmup_seconds": args.warmup_seconds,
        "offered_rps": {
            "Recommend": args.rps,
            "RecordEvents": args.feedback_rps,
            "GetProfile": args.read_rps,
            "GetProducts": args.read_rps,
        },
        "events_per_record_call": EVENTS_PER_CALL,
        "products_per_read": PRODUCTS_PER_READ,
        "workers": args.workers,
        "load_generator": "separate process, open loop per RPC, one grpc.aio channel each",
    }


def _print(result: dict[str, Any]) -> None:
    print(f"{'rpc':<13} {'requests':>9} {'errors':>7} {'degraded':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in result["rpcs"].items():
        print(
            f"{name:<13} {r['requests']:>9} {r['errors']:>7} {r['degraded']:>9} "
            f"{r['p50_ms']:>8} {r['p99_ms']:>8}"
        )
    print(f"\n{'process':<10} {'RSS MiB first':>14} {'last':>8} {'slope MiB/min':>14}")
    for name, mb in result["rss_mb_after_warmup"].items():
        slope = result["rss_slope_mb_per_min"][name]
        print(f"{name:<10} {mb['first']:>14} {mb['last']:>8} {slope:>14}")
    print(f"max slope {result['rss_slope_mb_per_min']['max']} MiB/min")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--rps", type=float, default=20.0, help="Recommend calls per second")
    parser.add_argument(
        "--feedback-rps",
        type=float,
        default=5.0,
        help=f"RecordEvents calls per second, {EVENTS_PER_CALL} events each",
    )
    parser.add_argument(
        "--read-rps", type=float, default=5.0, help="GetProfile and GetProducts calls per second"
    )
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--warmup-seconds", type=float, default=60.0)
    parser.add_argument(
        "--no-workers",
        dest="workers",
        action="store_false",
        help="without the retraining worker and beat",
    )
    args = parser.parse_args()
    if args.generate:
        print(json.dumps(asyncio.run(_generate(json.loads(sys.stdin.read())))))
        return
    result = _run(args)
    _print(result)
    print(f"wrote {write_report('soak', result)}")


if __name__ == "__main__":
    main()
