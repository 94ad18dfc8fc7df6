"""Recommend under load: latency percentiles and throughput per offered rate, the hops
that make up one call, the ratio to a bare gRPC health-check round trip, and (with
``--baseline``) the same against the code of an earlier git REF in the same run.

    python -m tools.bench.serving [--products 5000 --users 2000 --events 150000]
                                  [--levels 10,25,50,75] [--seconds 20] [--rounds N]
                                  [--baseline REF] [--catalog-sizes 5000,100000]

The benchmark brings up an isolated platform (five services, tritonserver, a fresh
PostgreSQL database, a Redis database of its own) with `LocalPlatform` in a process of
its own (`_serve_platform.py`), loads a synthetic world through the public APIs, trains
and promotes a model, and then runs the load generator as a separate process (so it
does not share the services' interpreters). Every user is asked for once, unmeasured,
before anything is measured (warm caches, as in a platform's steady state). Load is
open loop: requests start on a fixed schedule whatever the latency, 500 candidates
ranked per call (the ranking service's default). Hops are measured one at a time,
unloaded, with the same payloads Recommend sends. Per level, the CPU each process used
per request is read from /proc (where the two cores go), and so is the CPU of one bare
health-check call on each side, and the resident memory of each process (with its
children) after the level.

``--baseline REF`` checks REF out in a temporary git worktree and brings up a second
platform that runs its code (PYTHONPATH and working directory are the worktree), beside
the current tree's. One load generator then runs every level against both, round after
round, current first in even rounds and baseline first in odd ones, so both see the same
machine. Levels report medians over rounds (errors, degraded and requests are summed);
``cpu_ratio_vs_baseline`` is the current tree's total CPU ms per Recommend over the
baseline's, at 100 requests/s (or the highest level offered).

``capacity_rps_per_core`` is derived, not a saturation test: for each process, 1000 / its
CPU ms per Recommend at the highest level answered with p99 under 50 ms, no error and
nothing degraded: what one core of it sustains if CPU is what bounds it.

Every platform runs as the Helm chart deploys it unless ``--open`` is given: bearer-token
authentication on every hop (the services present an admin token to each other, the load
generator a reader's) and OpenTelemetry tracing with the chart's sampler (parent-based,
ratio 0.1), exported over OTLP to a receiver in its own process. Triton's own tracing
stays off in both trees (it records only sampled requests). ``--open`` measures the
loopback development platform instead (no tokens, no tracer).

``--catalog-sizes`` repeats the run for the current tree with catalogs of those sizes
(same users and events), one level each, for ``by_catalog_size``: unloaded p50, CPU per
Recommend and memory per process. ``--catalog-only`` runs just those rows and sets them in
the report already written (with their own command; rows of other sizes stay). Writes
bench-results/serving.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from magpie.runtime.machine import machine_info
from tools.bench._load import Outcome, Recommender, open_loop, run_generator, start_times
from tools.bench._platform import cpu_seconds, otlp_receiver, rss_mb
from tools.bench._report import RESULTS_DIR, command_line, percentiles, write_report

__all__ = [
    "capacity_rps_per_core",
    "cpu_ratios",
    "headline_rps",
    "interleaving",
    "median_levels",
    "summarise",
]

ROOT = Path(__file__).resolve().parents[2]
"""The current tree."""
CURRENT, BASELINE = "current", "baseline"
REDIS_URLS = {CURRENT: "redis://127.0.0.1:6379/6", BASELINE: "redis://127.0.0.1:6379/7"}
"""Each platform's cache, emptied before it starts (so neither reads the other's)."""
HEADLINE_RPS = 100
CHART_SAMPLER, CHART_SAMPLE_RATIO = "parentbased_traceidratio", "0.1"
"""The Helm chart's default tracing (values ``telemetry.sampleRatio``)."""
P99_LIMIT_MS = 50.0
"""The latency a level must meet to count for capacity."""
_NOT_SERVICES = ("load generator", "total")
_WARMUP = 5
_IDLE_SECONDS = 15.0
_WARM_CONCURRENCY = 8


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


def _cpu_now(processes: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds each process (with its descendants' pids) has used so far."""
    return {name: cpu_seconds(pids) for name, pids in processes.items()}


def _cpu_ms_since(
    before: dict[str, float], processes: dict[str, list[int]], per: float
) -> dict[str, float]:
    """CPU ms each process used since ``before`` (of :func:`_cpu_now`), divided by ``per``
    (requests, or seconds)."""
    now = _cpu_now(processes)
    return {name: round((now[name] - before[name]) * 1000 / per, 2) for name in processes}


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
    """One offered rate for ``seconds``, with the CPU each process and the machine used,
    and each process's memory after it."""
    starts = start_times(rps, seconds)
    total = len(starts)
    cpu_before = _cpu_now(processes)
    busy_before, idle_before = _machine_busy_idle()
    outcomes, elapsed = await open_loop(starts, lambda: recommend(pick_user()))
    busy_after, idle_after = _machine_busy_idle()
    busy, idle = busy_after - busy_before, idle_after - idle_before
    cpu_ms = _cpu_ms_since(cpu_before, processes, per=total)
    level = _summarise_level(rps, outcomes, elapsed, cpu_ms, busy / max(busy + idle, 1))
    level["rss_mb"] = {name: round(rss_mb(pids), 1) for name, pids in processes.items()}
    return level


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


def interleaving(rounds: int, levels: list[int], trees: list[str]) -> list[tuple[int, int, str]]:
    """The order of the measured runs: (round, offered rps, tree), every level of a round in
    turn, each against every tree, the trees' order reversed in odd rounds."""
    return [
        (round_, rps, tree)
        for round_ in range(rounds)
        for rps in levels
        for tree in (trees if round_ % 2 == 0 else trees[::-1])
    ]


@dataclasses.dataclass(frozen=True)
class _Clients:
    """The load generator's channels and stubs to one platform."""

    channels: list[Any]
    ranking: Any
    health: Any
    profiles: Any
    retrieval: Any
    catalog: Any
    ranker: Any
    recommend: Recommender

    @classmethod
    def connect(cls, platform: dict[str, Any]) -> _Clients:
        """Channels to ``platform``, presenting the job's token when it has one."""
        import grpc
        from grpc_health.v1 import health_pb2_grpc

        from magpie.modelstore.client import RankerClient
        from magpie.runtime.auth import PresentToken
        from magpie.v1 import (
            catalog_pb2_grpc,
            profiles_pb2_grpc,
            ranking_pb2,
            ranking_pb2_grpc,
            retrieval_pb2_grpc,
        )

        token_file = platform.get("token_file")
        interceptors = [PresentToken(token_file)] if token_file else None
        channels = {
            n: grpc.aio.insecure_channel(a, interceptors=interceptors)
            for n, a in platform["addresses"].items()
        }
        ranking = ranking_pb2_grpc.RankingServiceStub(channels["ranking"])
        return cls(
            channels=list(channels.values()),
            ranking=ranking,
            health=health_pb2_grpc.HealthStub(channels["ranking"]),
            profiles=profiles_pb2_grpc.ProfileServiceStub(channels["profiles"]),
            retrieval=retrieval_pb2_grpc.RetrievalServiceStub(channels["retrieval"]),
            catalog=catalog_pb2_grpc.CatalogServiceStub(channels["catalog"]),
            ranker=RankerClient(platform["triton"], platform["triton_model"], 5.0),
            recommend=Recommender(ranking, ranking_pb2.RecommendRequest, grpc.aio.AioRpcError),
        )

    async def close(self) -> None:
        await self.ranker.close()
        for channel in self.channels:
            await channel.close()


async def _idle_cpu(processes: dict[str, list[int]]) -> dict[str, float]:
    """CPU ms per second each process spends with no request to serve (timers, pollers,
    exporters): the part of CPU per Recommend that does not grow with the load."""
    before = _cpu_now(processes)
    started = time.perf_counter()
    await asyncio.sleep(_IDLE_SECONDS)
    return _cpu_ms_since(before, processes, per=time.perf_counter() - started)


async def _unloaded(
    platform: dict[str, Any], clients: _Clients, rng: random.Random, repeat: int
) -> dict[str, Any]:
    """One platform unloaded: its hops, a bare health check, Recommend, and idle CPU."""
    from magpie.v1 import ranking_pb2

    hops = await _hops(
        {**platform, "hop_repeat": repeat},
        clients.profiles,
        clients.retrieval,
        clients.catalog,
        clients.ranker,
    )
    health_p50, health_cpu_us = await _health_baseline(
        clients.health, platform["processes"]["ranking"], repeat
    )
    users: list[str] = platform["users"]
    recommend_p50 = await _timed(
        lambda: clients.ranking.Recommend(
            ranking_pb2.RecommendRequest(user_id=rng.choice(users), k=10)
        ),
        repeat,
    )
    return {
        "health_rtt_p50_ms": health_p50,
        "health_cpu_us_per_call": health_cpu_us,
        "recommend_unloaded_p50_ms": recommend_p50,
        "p50_ratio_to_health_rtt": round(recommend_p50 / health_p50, 1),
        "hops_p50_ms": hops,
        "idle_cpu_ms_per_s": await _idle_cpu(platform["processes"]),
    }


async def _warm(clients: _Clients, users: list[str]) -> None:
    """One unmeasured Recommend per user, a few at a time: the figures are those of a
    platform in its steady state, whose caches (profiles, products) hold what it serves,
    not of the minutes after a deploy, when every user is a cache miss."""
    gate = asyncio.Semaphore(_WARM_CONCURRENCY)

    async def one(user: str) -> None:
        async with gate:
            await clients.recommend(user)

    await asyncio.gather(*map(one, users))


async def _generate(job: dict[str, Any]) -> dict[str, Any]:
    """The load generator (runs in its own process): each platform warmed and measured
    unloaded, then every (round, level, platform) of `interleaving` in turn; per platform,
    its unloaded figures and its runs."""
    platforms: dict[str, dict[str, Any]] = job["platforms"]
    rng = random.Random(0)
    clients = {tree: _Clients.connect(platform) for tree, platform in platforms.items()}
    for tree, platform in platforms.items():
        await _warm(clients[tree], platform["users"])
    measured = {
        tree: {**await _unloaded(platform, clients[tree], rng, job["hop_repeat"]), "runs": []}
        for tree, platform in platforms.items()
    }
    for round_, rps, tree in interleaving(job["rounds"], job["levels"], list(platforms)):
        users: list[str] = platforms[tree]["users"]
        processes = {**platforms[tree]["processes"], "load generator": [os.getpid()]}
        pick_user = functools.partial(rng.choice, users)
        level = await _run_level(rps, job["seconds"], clients[tree].recommend, pick_user, processes)
        measured[tree]["runs"].append({"round": round_, **level})
        await asyncio.sleep(2.0)
    for client in clients.values():
        await client.close()
    return measured


def _median(values: list[float]) -> float:
    return round(float(np.median(values)), 2)


def _median_by_name(records: list[dict[str, float]]) -> dict[str, float]:
    return {name: _median([r[name] for r in records]) for name in records[0]}


def median_levels(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per offered rate (in the order first run) from the runs of every round:
    medians of the rates, latencies, CPU, memory and busy share; sums of the counts."""
    by_rps: dict[float, list[dict[str, Any]]] = {}
    for run in runs:
        by_rps.setdefault(run["rps_offered"], []).append(run)
    return [
        {
            "rps_offered": rps,
            **{
                key: _median([r[key] for r in group])
                for key in ("rps_achieved", "p50_ms", "p95_ms", "p99_ms")
            },
            **{key: sum(r[key] for r in group) for key in ("errors", "degraded", "requests")},
            "cpu_ms_per_request": _median_by_name([r["cpu_ms_per_request"] for r in group]),
            "machine_busy_share": _median([r["machine_busy_share"] for r in group]),
            "rss_mb": _median_by_name([r["rss_mb"] for r in group]),
            "rounds": len(group),
        }
        for rps, group in by_rps.items()
    ]


def headline_rps(levels: list[dict[str, Any]]) -> float:
    """The level the headline figures come from: 100 requests/s, or the highest offered."""
    offered = [level["rps_offered"] for level in levels]
    return HEADLINE_RPS if HEADLINE_RPS in offered else max(offered)


def _at(levels: list[dict[str, Any]], rps: float) -> dict[str, Any] | None:
    return next((level for level in levels if level["rps_offered"] == rps), None)


def cpu_ratios(current: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> dict[str, float]:
    """Per offered rate (as a JSON key), the current tree's total CPU ms per Recommend over
    the baseline's."""
    ratios = {}
    for level in current:
        base = _at(baseline, level["rps_offered"])
        if base is not None:
            ratio = level["cpu_ms_per_request"]["total"] / base["cpu_ms_per_request"]["total"]
            ratios[f"{level['rps_offered']:g}"] = round(ratio, 3)
    return ratios


def capacity_rps_per_core(levels: list[dict[str, Any]]) -> tuple[float | None, dict[str, float]]:
    """The highest level answered with p99 under `P99_LIMIT_MS`, no error and nothing
    degraded, and per process 1000 / its CPU ms per Recommend there (requests/s one core
    of it sustains); None and nothing when no level qualifies."""
    good = [
        level
        for level in levels
        if level["p99_ms"] < P99_LIMIT_MS and not level["errors"] and not level["degraded"]
    ]
    if not good:
        return None, {}
    best = max(good, key=lambda level: level["rps_offered"])
    cpu: dict[str, float] = best["cpu_ms_per_request"]
    per_core = {n: round(1000 / ms, 1) for n, ms in cpu.items() if n not in _NOT_SERVICES and ms}
    return best["rps_offered"], per_core


def _tree(measured: dict[str, Any]) -> dict[str, Any]:
    """One tree's figures: its unloaded ones and its levels (medians over rounds)."""
    unloaded = {key: value for key, value in measured.items() if key != "runs"}
    return {"levels": median_levels(measured["runs"]), **unloaded}


def summarise(
    measured: dict[str, dict[str, Any]], baseline_source: dict[str, str] | None = None
) -> dict[str, Any]:
    """The report from the generator's output: today's figures for the current tree,
    capacity from them, and (when a baseline ran: ``baseline_source`` says which ref and
    commit) its figures and the CPU ratios."""
    current = _tree(measured[CURRENT])
    capacity_rps, capacity = capacity_rps_per_core(current["levels"])
    result: dict[str, Any] = {
        **current,
        "capacity_rps_per_core": capacity,
        "capacity_at_rps": capacity_rps,
        "capacity_derivation": (
            f"1000 / CPU ms per Recommend of each process at the highest level with p99 < "
            f"{P99_LIMIT_MS:g} ms, no error and none degraded (not a saturation test)"
        ),
    }
    if BASELINE in measured:
        baseline = _tree(measured[BASELINE])
        at = headline_rps(current["levels"])
        ratios = cpu_ratios(current["levels"], baseline["levels"])
        headline = _at(baseline["levels"], at)
        at_100 = _at(baseline["levels"], HEADLINE_RPS)
        result["baseline"] = {
            **(baseline_source or {}),
            "cpu_ms_per_request": headline["cpu_ms_per_request"] if headline else None,
            "p99_ms_at_100": at_100["p99_ms"] if at_100 else None,
            **baseline,
        }
        result["cpu_ratio_vs_baseline"] = ratios.get(f"{at:g}")
        result["cpu_ratio_at_rps"] = at
        result["cpu_ratio_by_level"] = ratios
    result["runs"] = {tree: tree_measured["runs"] for tree, tree_measured in measured.items()}
    return result


@dataclasses.dataclass(frozen=True)
class _World:
    products: int
    users: int
    events: int


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


@contextlib.contextmanager
def _worktree(ref: str) -> Iterator[Path]:
    """A detached git worktree of ``ref`` in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="magpie-baseline-") as folder:
        tree = Path(folder) / "baseline"
        _git("worktree", "add", "--detach", str(tree), ref)
        try:
            yield tree
        finally:
            _git("worktree", "remove", "--force", str(tree))


@dataclasses.dataclass(frozen=True)
class _Security:
    """Authentication and tracing as the chart deploys them, for every measured platform."""

    settings: dict[str, str]
    """MAGPIE_* values: the callers' tokens file and the token the services present."""
    environment: dict[str, str]
    """OTEL_* variables: the chart's sampler, exporting to the receiver."""
    token_file: str
    """The load generator's token (a reader, as a storefront)."""

    @classmethod
    @contextlib.contextmanager
    def chart_defaults(cls, folder: Path) -> Iterator[_Security]:
        """Tokens in ``folder`` and an OTLP receiver process, for as long as the block runs."""
        from magpie.runtime.auth import new_token

        entries: dict[str, dict[str, str]] = {}
        for name, role in (("storefront", "reader"), ("magpie", "admin")):
            token, entry = new_token(name, role)
            (folder / f"{name}.token").write_text(token)
            entries.update(entry)
        (folder / "callers.json").write_text(json.dumps(entries))
        with otlp_receiver(folder / "spans.jsonl") as targets:
            sampled = dataclasses.replace(
                targets, sampler=CHART_SAMPLER, sampler_arg=CHART_SAMPLE_RATIO
            )
            yield cls(
                settings={
                    "MAGPIE_AUTH_TOKENS_FILE": str(folder / "callers.json"),
                    "MAGPIE_AUTH_TOKEN_FILE": str(folder / "magpie.token"),
                },
                environment=sampled.environment(),
                token_file=str(folder / "storefront.token"),
            )


@contextlib.contextmanager
def _served(
    tree: Path,
    world: _World,
    redis_url: str,
    settings: dict[str, str],
    security: _Security | None,
) -> Iterator[dict[str, Any]]:
    """A trained platform running ``tree``'s code (`_serve_platform.py` of this tree, with
    ``tree`` as PYTHONPATH and working directory), up until the block ends; its job (with
    the token the load generator presents, under ``security``)."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    command = [
        sys.executable,
        "-P",
        str(Path(__file__).with_name("_serve_platform.py")),
        *("--products", str(world.products), "--users", str(world.users)),
        *("--events", str(world.events), "--redis-url", redis_url),
        *("--settings", json.dumps({**settings, **(security.settings if security else {})})),
    ]
    env = {**os.environ, **(security.environment if security else {}), "PYTHONPATH": str(tree)}
    with subprocess.Popen(
        command, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as server:
        assert server.stdin is not None and server.stdout is not None
        try:
            line = server.stdout.readline()
            if not line:
                raise RuntimeError(f"the platform of {tree} did not come up (see its stderr)")
            job: dict[str, Any] = json.loads(line)
            if Path(job["source_root"]).resolve() != tree.resolve():
                raise RuntimeError(f"the platform of {tree} runs {job['source_root']}")
            yield {**job, "token_file": security.token_file if security else None}
        finally:
            server.stdin.close()
            server.wait(timeout=120)


def _settings(args: argparse.Namespace) -> dict[str, str]:
    """The MAGPIE_* settings of every measured platform."""
    return {"MAGPIE_LOG_LEVEL": "WARNING", "MAGPIE_DB_POOL_SIZE": str(args.db_pool_size)}


def _measure(platforms: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    job = {
        "platforms": platforms,
        "levels": args.levels,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "hop_repeat": args.hop_repeat,
    }
    return run_generator("tools.bench.serving", job)


def _compared_run(
    args: argparse.Namespace, world: _World, security: _Security | None
) -> dict[str, Any]:
    """The current tree (and the baseline's, at once) measured by one generator."""
    with contextlib.ExitStack() as stack:
        baseline, source = None, None
        if args.baseline:
            tree = stack.enter_context(_worktree(args.baseline))
            source = {"ref": args.baseline, "commit": _git("-C", str(tree), "rev-parse", "HEAD")}
            served = _served(tree, world, REDIS_URLS[BASELINE], _settings(args), security)
            baseline = stack.enter_context(served)
        served = _served(ROOT, world, REDIS_URLS[CURRENT], _settings(args), security)
        platforms = {CURRENT: stack.enter_context(served)}
        if baseline is not None:
            platforms[BASELINE] = baseline
        return summarise(_measure(platforms, args), source)


def _catalog_row(
    args: argparse.Namespace, products: int, security: _Security | None
) -> dict[str, Any]:
    """The current tree with ``products`` products, unloaded and at ``--catalog-rps``."""
    world = _World(products, args.users, args.events)
    level_args = argparse.Namespace(**{**vars(args), "levels": [args.catalog_rps], "rounds": 1})
    with _served(ROOT, world, REDIS_URLS[CURRENT], _settings(args), security) as platform:
        measured = _measure({CURRENT: platform}, level_args)[CURRENT]
    (level,) = measured["runs"]
    return {
        "products": products,
        "unloaded_p50_ms": measured["recommend_unloaded_p50_ms"],
        "rps_offered": level["rps_offered"],
        "p99_ms": level["p99_ms"],
        "cpu_ms_per_request": level["cpu_ms_per_request"],
        "rss_mb": level["rss_mb"],
        "idle_cpu_ms_per_s": measured["idle_cpu_ms_per_s"],
        "machine": machine_info(),
    }


def _run(args: argparse.Namespace) -> dict[str, Any]:
    world = _World(args.products, args.users, args.events)
    with contextlib.ExitStack() as stack:
        security = None
        result: dict[str, Any]
        if not args.open:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="magpie-auth-")))
            security = stack.enter_context(_Security.chart_defaults(folder))
        if args.catalog_only:
            result = json.loads((args.out or RESULTS_DIR / "serving.json").read_text())
            result["by_catalog_size_command"] = command_line()
        else:
            result = _compared_run(args, world, security)
        if args.catalog_sizes:  # rows of other sizes already in the report stay
            rows = {row["products"]: row for row in result.get("by_catalog_size", [])}
            rows.update({n: _catalog_row(args, n, security) for n in args.catalog_sizes})
            result["by_catalog_size"] = [rows[n] for n in sorted(rows)]
    result["security"] = (
        {"auth": "bearer tokens", "tracing": f"{CHART_SAMPLER} {CHART_SAMPLE_RATIO}"}
        if security
        else {"auth": "off", "tracing": "off"}
    )
    result["world"] = dataclasses.asdict(world)
    result["candidates"] = 500
    result["load_generator"] = "separate process, open loop, one grpc.aio channel per service"
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
    if "idle_cpu_ms_per_s" in result:  # reports before it was measured lack it
        print(f"idle CPU ms per second by process: {result['idle_cpu_ms_per_s']}")
    per_core = result["capacity_rps_per_core"]
    print(f"\nrequests/s one core sustains (at {result['capacity_at_rps']} rps): {per_core}")
    if "baseline" in result:
        _print_comparison(result)
    for row in result.get("by_catalog_size", []):
        print(
            f"{row['products']:>9} products: unloaded p50 {row['unloaded_p50_ms']} ms, "
            f"CPU {row['cpu_ms_per_request']['total']} ms per Recommend at "
            f"{row['rps_offered']} rps, RSS MB {row['rss_mb']}"
        )


def _print_comparison(result: dict[str, Any]) -> None:
    baseline = result["baseline"]
    print(f"\nagainst {baseline['ref']} ({baseline['commit'][:12]}), medians over rounds:")
    header = ("offered rps", "p50 ms", "base p50", "p99 ms", "base p99", "degraded", "base deg")
    print(" ".join(f"{h:>11}" for h in (*header, "CPU ms", "base CPU", "ratio")))
    for level in result["levels"]:
        base = _at(baseline["levels"], level["rps_offered"])
        assert base is not None
        cells = [level["rps_offered"]]
        for key in ("p50_ms", "p99_ms", "degraded"):
            cells += [level[key], base[key]]
        cells += [level["cpu_ms_per_request"]["total"], base["cpu_ms_per_request"]["total"]]
        cells.append(result["cpu_ratio_by_level"][f"{level['rps_offered']:g}"])
        print(" ".join(f"{c:>11}" for c in cells))
    print(
        f"cpu_ratio_vs_baseline {result['cpu_ratio_vs_baseline']} "
        f"(at {result['cpu_ratio_at_rps']} rps)"
    )


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--products", type=int, default=5_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--levels", type=_ints, default=[10, 25, 50, 75])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--hop-repeat", type=int, default=200)
    parser.add_argument(
        "--baseline", metavar="REF", help="also measure the code at git REF, interleaved"
    )
    parser.add_argument(
        "--rounds", type=int, help="runs of every level (default: 3 with --baseline, else 1)"
    )
    parser.add_argument("--catalog-sizes", type=_ints, default=[], metavar="N,N,...")
    parser.add_argument("--catalog-rps", type=int, default=25, help="the level of each size")
    parser.add_argument(
        "--db-pool-size",
        type=int,
        default=8,
        help="per service (each platform holds about 5x this many PostgreSQL connections)",
    )
    parser.add_argument(
        "--catalog-only",
        action="store_true",
        help="run only the --catalog-sizes rows, into the report that is there already",
    )
    parser.add_argument(
        "--open",
        action="store_true",
        help="no authentication and no tracing (the local development platform)",
    )
    parser.add_argument("--out", type=Path, help="instead of bench-results/serving.json")
    args = parser.parse_args()
    if args.generate:
        print(json.dumps(asyncio.run(_generate(json.loads(sys.stdin.read())))))
        return
    if args.rounds is None:
        args.rounds = 3 if args.baseline else 1
    result = _run(args)
    written = write_report("serving", result, args.out)  # first: a printing slip loses nothing
    _print(result)
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
