"""Overload: Recommend at twice the platform's measured capacity.

    python -m tools.bench.overload [--seconds 20] [--deadline-ms 300] [--factor 2]

Brings up the platform with a trained model (as the serving benchmark does), then, from
a load generator in its own process:

1. capacity: closed loop, ``--clients`` concurrent callers without pause for
   ``--seconds``; capacity is the rate of OK answers;
2. overload: open loop at ``--factor`` x capacity for ``--seconds``, each call with a
   ``--deadline-ms`` deadline.

Reports, for the overload run, the accepted calls' latency (p50/p99, which should stay
under the deadline: admission control, magpie.runtime.admission, refuses what would not
finish in time), how fast refusals (RESOURCE_EXHAUSTED) come back, and every other
outcome by status code. Writes bench-results/overload.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tools.bench._load import open_loop, run_generator, start_times
from tools.bench._platform import trained_platform
from tools.bench._report import percentiles, write_report


async def _generate(job: dict[str, Any]) -> dict[str, Any]:
    """The load generator (its own process): the closed-loop capacity run, then the open-loop
    overload run; latencies by status code."""
    import grpc

    from magpie.v1 import ranking_pb2, ranking_pb2_grpc

    users = job["users"]
    deadline = job["deadline_ms"] / 1000
    async with grpc.aio.insecure_channel(job["ranking"]) as channel:
        stub = ranking_pb2_grpc.RankingServiceStub(channel)
        counter = iter(range(10**9))

        async def call(timeout: float) -> tuple[str, float]:
            user = users[next(counter) % len(users)]
            started = time.perf_counter()
            try:
                await stub.Recommend(
                    ranking_pb2.RecommendRequest(user_id=user, k=10), timeout=timeout
                )
                code = "OK"
            except grpc.aio.AioRpcError as error:
                code = error.code().name
            return code, (time.perf_counter() - started) * 1000

        for _ in range(50):  # warm caches and connections
            await call(2.0)
        closed: list[tuple[str, float]] = []
        stop_at = time.perf_counter() + job["seconds"]

        async def client() -> None:
            while time.perf_counter() < stop_at:
                closed.append(await call(2.0))

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(job["clients"])))
        capacity = sum(code == "OK" for code, _ in closed) / (time.perf_counter() - started)
        offered = capacity * job["factor"]
        outcomes, took = await open_loop(
            start_times(offered, job["seconds"]), lambda: call(deadline)
        )
    by_code: dict[str, list[float]] = collections.defaultdict(list)
    for code, ms in outcomes:
        by_code[code].append(ms)
    return {
        "capacity_rps": round(capacity, 1),
        "capacity_p50_ms": round(percentiles([ms for _, ms in closed])["p50"], 2),
        "offered_rps": round(offered, 1),
        "overload_seconds": round(took, 1),
        "calls": len(outcomes),
        "codes": {code: len(ms) for code, ms in sorted(by_code.items())},
        "latency_ms_by_code": {
            code: {k: round(v, 2) for k, v in percentiles(ms).items()}
            for code, ms in sorted(by_code.items())
        },
    }


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from magpie.datasets import synthetic
    from magpie.platform.demo import demo_world

    world = dataclasses.replace(demo_world(2000, 1000, 50_000), name="bench")
    dataset = synthetic.generate(world)
    with (
        tempfile.TemporaryDirectory(prefix="magpie-overload-") as state,
        trained_platform(
            Path(state),
            dataset,
            settings={
                "MAGPIE_LOG_LEVEL": "WARNING",
                "MAGPIE_MAX_IN_FLIGHT": str(args.max_in_flight),
            },
        ) as platform,
    ):
        job = {
            "ranking": platform.local.layout.address("ranking"),
            "users": [u.user_id for u in dataset.users],
            "seconds": args.seconds,
            "clients": args.clients,
            "factor": args.factor,
            "deadline_ms": args.deadline_ms,
        }
        result = run_generator("tools.bench.overload", job)
    accepted = result["latency_ms_by_code"].get("OK", {})
    refused = result["latency_ms_by_code"].get("RESOURCE_EXHAUSTED", {})
    result.update(
        deadline_ms=args.deadline_ms,
        max_in_flight=args.max_in_flight,
        factor=args.factor,
        clients=args.clients,
        world={"products": 2000, "users": 1000, "events": 50_000},
        overload_accepted_p99_ms=accepted.get("p99"),
        overload_rejected_p99_ms=refused.get("p99"),
        accepted_share=round(result["codes"].get("OK", 0) / max(1, result["calls"]), 3),
        load_generator="separate process, one grpc.aio channel",
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8, help="closed-loop callers")
    parser.add_argument("--factor", type=float, default=2.0, help="overload x capacity")
    parser.add_argument("--deadline-ms", type=float, default=300.0)
    parser.add_argument(
        "--max-in-flight", type=int, default=64, help="MAGPIE_MAX_IN_FLIGHT of every service"
    )
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        print(json.dumps(asyncio.run(_generate(json.loads(sys.stdin.read())))))
        return
    result = _run(args)
    print(f"capacity {result['capacity_rps']} rps (closed loop, {args.clients} callers)")
    print(f"offered {result['offered_rps']} rps for {result['overload_seconds']} s")
    print(f"{'code':<20} {'calls':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for code, count in result["codes"].items():
        lat = result["latency_ms_by_code"][code]
        print(f"{code:<20} {count:>7} {lat['p50']:>8} {lat['p99']:>8}")
    print(f"written {write_report('overload', result)}")


if __name__ == "__main__":
    main()
