"""Reliability in one file: Recommend with its dependencies failing, plus the headline
figures of the crash, fuzz, soak and overload benchmarks.

    python -m tools.bench.reliability [--calls 200] [--deadline-ms 300]

Brings up the platform with a trained model, then for each failure in turn (Triton
hung by SIGSTOP, Triton gone, retrieval gone as well) sends ``--calls`` Recommend calls
one after another, each with a ``--deadline-ms`` deadline, and counts those answered OK,
flagged degraded, within the deadline. The other figures are read from
bench-results/{feedback-crash,fuzz,soak,overload}.json (run those benchmarks first);
writes bench-results/reliability.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from tools.bench._platform import trained_platform
from tools.bench._report import RESULTS_DIR, percentiles, write_report


def _recommend_under(address: str, users: list[str], calls: int, deadline: float) -> dict[str, Any]:
    import grpc

    from magpie.v1 import ranking_pb2, ranking_pb2_grpc

    within, latencies, codes = 0, [], {}
    with grpc.insecure_channel(address) as channel:
        stub = ranking_pb2_grpc.RankingServiceStub(channel)
        for n in range(calls):
            started = time.perf_counter()
            try:
                reply = stub.Recommend(
                    ranking_pb2.RecommendRequest(user_id=users[n % len(users)], k=10),
                    timeout=deadline,
                )
                code = "OK"
            except grpc.RpcError as error:
                code, reply = error.code().name, None
            took = time.perf_counter() - started
            latencies.append(took * 1000)
            codes[code] = codes.get(code, 0) + 1
            if reply is not None and reply.degradations and len(reply.items) == 10:
                within += took <= deadline
    return {
        "calls": calls,
        "codes": codes,
        "degraded_within_deadline": within,
        "latency_ms": {k: round(v, 2) for k, v in percentiles(latencies).items()},
    }


def _degradation(args: argparse.Namespace) -> dict[str, Any]:
    from magpie.datasets import synthetic
    from magpie.platform.demo import demo_world

    world = dataclasses.replace(demo_world(2000, 1000, 50_000), name="bench")
    dataset = synthetic.generate(world)
    users = [u.user_id for u in dataset.users]
    deadline = args.deadline_ms / 1000
    phases: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="magpie-reliability-") as state,
        trained_platform(Path(state), dataset, settings={"MAGPIE_LOG_LEVEL": "WARNING"}) as p,
    ):
        ranking = p.local.layout.address("ranking")
        _recommend_under(ranking, users, 20, 2.0)  # warm
        triton = p.local.running()["triton"]
        os.kill(triton, signal.SIGSTOP)
        try:
            phases["triton_hung"] = _recommend_under(ranking, users, args.calls, deadline)
        finally:
            os.kill(triton, signal.SIGCONT)
        p.local.stop("triton")
        phases["triton_gone"] = _recommend_under(ranking, users, args.calls, deadline)
        p.local.stop("retrieval")
        phases["triton_and_retrieval_gone"] = _recommend_under(ranking, users, args.calls, deadline)
    return phases


def _read(name: str) -> dict[str, Any]:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200, help="Recommend calls per failure")
    parser.add_argument("--deadline-ms", type=float, default=300.0)
    args = parser.parse_args()
    phases = _degradation(args)
    calls = sum(phase["calls"] for phase in phases.values())
    within = sum(phase["degraded_within_deadline"] for phase in phases.values())
    crash, fuzz, soak, overload = (_read(n) for n in ("feedback-crash", "fuzz", "soak", "overload"))
    result = {
        "acked_events": crash.get("acked_events"),
        "stored_events": crash.get("stored_events"),
        "duplicates": crash.get("duplicates"),
        "fuzz_cases": fuzz.get("fuzz_cases"),
        "fuzz_internal_errors": fuzz.get("fuzz_internal_errors"),
        "soak_seconds": soak.get("soak_seconds"),
        "soak_requests": soak.get("soak_requests"),
        "soak_errors": soak.get("soak_errors"),
        "rss_slope_mb_per_min": soak.get("rss_slope_mb_per_min"),
        "degraded_within_deadline_pct": round(100 * within / calls, 2),
        "overload_accepted_p99_ms": overload.get("overload_accepted_p99_ms"),
        "overload_rejected_p99_ms": overload.get("overload_rejected_p99_ms"),
        "degradation": {"deadline_ms": args.deadline_ms, "phases": phases},
        "sources": {
            name: data.get("command")
            for name, data in (
                ("feedback-crash", crash),
                ("fuzz", fuzz),
                ("soak", soak),
                ("overload", overload),
            )
        },
    }
    print(f"{'failure':<28} {'calls':>6} {'degraded in time':>17} {'p99 ms':>8}")
    for name, phase in phases.items():
        print(
            f"{name:<28} {phase['calls']:>6} {phase['degraded_within_deadline']:>17}"
            f" {phase['latency_ms']['p99']:>8}"
        )
    print(f"degraded within the deadline: {result['degraded_within_deadline_pct']}%")
    print(f"written {write_report('reliability', result)}")


if __name__ == "__main__":
    main()
