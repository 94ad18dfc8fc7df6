"""Open-loop load on a running platform, shared by the serving and soak benchmarks.

Requests start on a fixed schedule whatever the latency (open loop), so a slow answer
does not slow the offered rate down and queueing shows in the latencies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = [
    "REQUEST_TIMEOUT",
    "Outcome",
    "Recommender",
    "open_loop",
    "run_generator",
    "start_times",
]

REQUEST_TIMEOUT = 2.0

_T = TypeVar("_T")

Outcome = tuple[float | None, bool]
"""One request under load: its latency in ms (None when it failed) and whether it was
answered degraded."""


@dataclasses.dataclass(frozen=True)
class Recommender:
    """Issues one Recommend call and records its outcome."""

    stub: Any  # ranking_pb2_grpc.RankingServiceStub
    request: Callable[..., Any]  # ranking_pb2.RecommendRequest
    rpc_error: type[Exception]  # grpc.aio.AioRpcError

    async def __call__(self, user_id: str) -> Outcome:
        started = time.perf_counter()
        try:
            reply = await self.stub.Recommend(
                self.request(user_id=user_id, k=10), timeout=REQUEST_TIMEOUT
            )
        except self.rpc_error:
            return None, False
        return (time.perf_counter() - started) * 1000, bool(reply.degradations)


def start_times(rps: float, seconds: float) -> list[float]:
    """Open-loop schedule: when each request starts, in seconds from the run's start."""
    return [n / rps for n in range(int(rps * seconds))]


async def open_loop(
    starts: list[float], call: Callable[[], Awaitable[_T]]
) -> tuple[list[_T], float]:
    """Start one ``call()`` at each of ``starts`` whatever the latency; the outcomes, and
    the seconds from the first start until the last call finished."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks = []
    for offset in starts:
        delay = start + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(call()))
    outcomes = await asyncio.gather(*tasks)
    return list(outcomes), loop.time() - start


def run_generator(module: str, job: dict[str, Any]) -> dict[str, Any]:
    """Runs ``python -m MODULE --generate`` (a benchmark's load generator, in a process of
    its own so that it does not share an interpreter with what it measures) on ``job``;
    the JSON it prints."""
    generator = subprocess.run(
        [sys.executable, "-m", module, "--generate"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(generator.stdout)
    return result
