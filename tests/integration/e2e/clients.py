"""Clients looping on Recommend while the platform changes under them."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import grpc

from magpie.v1 import ranking_pb2, ranking_pb2_grpc

K = 10


class Clients:
    """Clients looping on Recommend; every answer that is not a full, undegraded one is
    recorded."""

    def __init__(self, address: str, count: int = 3, interval: float = 0.0) -> None:
        """``count`` clients, each pausing ``interval`` seconds between calls (0: none; a
        pause keeps the cores for whatever the test exercises, such as training)."""
        self.address = address
        self.count = count
        self.interval = interval
        self.failures: list[str] = []
        self.degraded: list[list[int]] = []
        self.degraded_at: list[float] = []
        """Wall-clock time (time.time()) of each degraded answer's request."""
        self.versions: Counter[str] = Counter()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _loop(self) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = ranking_pb2_grpc.RankingServiceStub(channel)
            while not self._stop.is_set():
                sent = time.time()
                try:
                    reply = await stub.Recommend(
                        ranking_pb2.RecommendRequest(user_id="u000002", k=K), timeout=5
                    )
                    self.versions[reply.model_version] += 1
                    if len(reply.items) != K:
                        self.failures.append(f"{len(reply.items)} items")
                    if reply.degradations:
                        self.degraded.append(list(reply.degradations))
                        self.degraded_at.append(sent)
                except grpc.aio.AioRpcError as error:
                    self.failures.append(error.code().name)
                if self.interval:
                    await asyncio.sleep(self.interval)

    def degraded_between(self, start: float, end: float) -> list[list[int]]:
        """The degraded answers to requests sent between two wall-clock times."""
        return [
            d for d, at in zip(self.degraded, self.degraded_at, strict=True) if start <= at <= end
        ]

    async def answered_by(self, version: int, calls: int = 20, timeout: float = 30) -> None:
        """Until ``calls`` more answers came from ``version``."""
        target = self.versions[str(version)] + calls
        give_up = time.monotonic() + timeout
        while self.versions[str(version)] < target and time.monotonic() < give_up:
            await asyncio.sleep(0.1)

    async def __aenter__(self) -> Clients:
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(self.count)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
