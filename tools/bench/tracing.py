"""What tracing costs a Recommend: p50 and p99 with every request traced (exported to a
real OTLP receiver in its own process), with the Helm chart's default sampling (ratio 0.1)
and with tracing off, in interleaved blocks of one run.

    python -m tools.bench.tracing [--blocks 9] [--seconds 30]

One isolated platform (the demo world, a trained model) is brought up with
`LocalPlatform`; then blocks cycle through the three modes: the five services are
restarted with the OTEL_* variables of the mode (no variables at all when off: no tracer
provider), warmed up, and one client sends Recommend calls back to back for
``--seconds``. Every user is asked for once before the first block, so that no block
reads the caches cold. Triton keeps its trace flags throughout; it records a request only when the
request carries a sampled traceparent, so in the "off" blocks it records nothing. Spans per
Recommend are counted per trace in the receiver. Writes bench-results/tracing-overhead.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from magpie.platform.traces import read_spans
from magpie.v1 import ranking_pb2, ranking_pb2_grpc
from tools.bench._platform import otlp_receiver, trained_platform
from tools.bench._report import percentiles, write_report

CHART_SAMPLER, CHART_RATIO = "parentbased_traceidratio", 0.1
"""What the Helm chart sets (helm/magpie values telemetry.sampleRatio)."""
WARMUP_CALLS = 50


def _warm_caches(address: str, users: list[str]) -> None:
    """One Recommend per user, unmeasured: the Redis caches of profiles and products
    outlive the service restarts between blocks, so without this the first block (always
    "on") alone would read them cold."""
    with grpc.insecure_channel(address) as channel:
        stub = ranking_pb2_grpc.RankingServiceStub(channel)
        for user in users:
            stub.Recommend(ranking_pb2.RecommendRequest(user_id=user, k=10), timeout=5)


def _block(address: str, users: list[str], seconds: float) -> tuple[list[float], list[str]]:
    """Latencies (ms) and recommendation ids of back-to-back calls for ``seconds``."""
    latencies, ids = [], []
    with grpc.insecure_channel(address) as channel:
        stub = ranking_pb2_grpc.RankingServiceStub(channel)
        for n in range(WARMUP_CALLS):
            stub.Recommend(ranking_pb2.RecommendRequest(user_id=users[n % len(users)]), timeout=5)
        stop = time.monotonic() + seconds
        n = 0
        while time.monotonic() < stop:
            started = time.perf_counter()
            reply = stub.Recommend(
                ranking_pb2.RecommendRequest(user_id=users[n % len(users)], k=10), timeout=5
            )
            latencies.append((time.perf_counter() - started) * 1000.0)
            ids.append(reply.recommendation_id)
            n += 1
    return latencies, ids


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from magpie.datasets import synthetic
    from magpie.platform.demo import demo_world, wait_for_version
    from magpie.platform.local import SERVICES

    world = synthetic.generate(demo_world())
    with (
        tempfile.TemporaryDirectory(prefix="magpie-tracing-") as state,
        otlp_receiver(Path(state) / "spans.jsonl") as targets,
        trained_platform(
            Path(state),
            world,
            settings={"MAGPIE_LOG_LEVEL": "WARNING", "MAGPIE_RETRAIN_EVENT_THRESHOLD": "0"},
            tracing=targets,
        ) as platform,
    ):
        local, settings, version = platform.local, platform.settings, platform.version
        users = [u.user_id for u in world.users]
        _warm_caches(settings.ranking_addr, users)
        modes = {
            "on": targets,
            "chart": dataclasses.replace(
                targets, sampler=CHART_SAMPLER, sampler_arg=str(CHART_RATIO)
            ),
            "off": None,
        }
        samples: dict[str, list[float]] = {mode: [] for mode in modes}
        traced_ids: list[str] = []
        for block in range(args.blocks):
            mode = list(modes)[block % len(modes)]
            for name in SERVICES:
                local.stop(name)
            local.tracing = modes[mode]
            local.up(list(SERVICES))
            wait_for_version(settings, version, timeout=60)
            latencies, ids = _block(settings.ranking_addr, users, args.seconds)
            samples[mode] += latencies
            if mode == "on":
                traced_ids += ids
            print(
                f"block {block} tracing {mode}: {len(latencies)} calls, "
                f"p50 {np.median(latencies):.2f} ms",
                flush=True,
            )
        time.sleep(7.0)  # the last batches of spans (exported every 5 s)
        spans = read_spans(Path(state) / "spans.jsonl")
        per_trace = Counter(span.trace_id for span in spans)
        roots = {
            span.attributes.get("magpie.recommendation.id"): span.trace_id
            for span in spans
            if not span.parent_span_id
        }
        counts = [per_trace[roots[i]] for i in traced_ids if i in roots]
    on, off = percentiles(samples["on"], (50, 99)), percentiles(samples["off"], (50, 99))
    chart = percentiles(samples["chart"], (50, 99))
    return {
        "p50_ms_off": round(off["p50"], 2),
        "p50_ms_on": round(on["p50"], 2),
        "p99_ms_off": round(off["p99"], 2),
        "p99_ms_on": round(on["p99"], 2),
        "p50_overhead": round(on["p50"] / off["p50"] - 1.0, 4),
        "chart_ratio": {
            "sample_ratio": CHART_RATIO,
            "p50_ms": round(chart["p50"], 2),
            "p99_ms": round(chart["p99"], 2),
            "p50_overhead": round(chart["p50"] / off["p50"] - 1.0, 4),
        },
        "spans_per_recommend": round(float(np.mean(counts)), 1) if counts else None,
        "calls": {mode: len(latencies) for mode, latencies in samples.items()},
        "traced_recommends_found": len(counts),
        "blocks": args.blocks,
        "seconds_per_block": args.seconds,
        "protocol": (
            "One platform; blocks cycle through tracing on (OTEL_TRACES_SAMPLER "
            "parentbased_always_on, OTLP/gRPC to a local receiver in its own process, the "
            "SDK's default batch processor), the chart's default (parent-based ratio 0.1) "
            "and off (no OTEL_* variables: no provider); one unmeasured call per user first "
            "(warm caches); per block the services restarted, 50 warm-up calls, then one "
            "client calling Recommend back to back (k=10, 500 candidates)."
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.tracing", description=__doc__)
    parser.add_argument("--blocks", type=int, default=9, help="a multiple of 3 (on, chart, off)")
    parser.add_argument("--seconds", type=float, default=30.0)
    result = _run(parser.parse_args())
    print(f"{'tracing':<8} {'p50 ms':>8} {'p99 ms':>8}")
    for mode in ("off", "on"):
        print(f"{mode:<8} {result[f'p50_ms_{mode}']:>8} {result[f'p99_ms_{mode}']:>8}")
    chart = result["chart_ratio"]
    print(f"{'chart':<8} {chart['p50_ms']:>8} {chart['p99_ms']:>8}")
    print(
        f"p50 overhead: on {result['p50_overhead']:+.1%}, chart {chart['p50_overhead']:+.1%}; "
        f"{result['spans_per_recommend']} spans per traced Recommend"
    )
    print(f"wrote {write_report('tracing-overhead', result)}")


if __name__ == "__main__":
    main()
