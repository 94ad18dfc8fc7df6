"""A full retraining cycle, trigger to served, and a rollback, with clients looping.

    python -m tools.bench.retrain                        # MovieLens-100k and a 1M-event world
    python -m tools.bench.retrain --datasets ml100k      # one of them

For each data set: an isolated platform (five services, Triton, a fresh PostgreSQL
database, the machine's Redis as cache and broker) is brought up with `LocalPlatform`, the
data set is loaded through the public APIs, a first model is trained and rolled out (the
champion), and the retraining worker is started. Then, while two clients loop on
Recommend, a manual trigger is sent and timed until the clients are answered by the new
version; each stage's duration comes from the run's stage attempts. Failed and degraded
answers are counted from the publish stage's start to the moment the new version served
(the swap), and a rollback is timed until the clients are answered by the old version
again. When the gate rejects the run's candidate (never servable then), the cycle ends
with the verdict, and the swap is measured with a version trained and promoted by hand.
Writes bench-results/retrain.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import psycopg2

from magpie.datasets.schema import Dataset
from magpie.runtime.units import SECONDS_PER_DAY
from magpie.v1 import ranking_pb2, ranking_pb2_grpc
from tools.bench._report import write_report

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH = "tools.bench.retrain"
RUN_PIPELINE = {
    "retrieval": {"epochs": 12, "max_seconds": 1e9},
    "ranker": {"epochs": 2, "max_seconds": 1e9},
}
"""What the measured run trains (fixed epochs: a slow host takes longer, not less)."""
CHAMPION_PIPELINE = {
    "retrieval": {"epochs": 3, "max_seconds": 1e9},
    "ranker": {"epochs": 1, "max_seconds": 1e9},
}
"""The first model, only there to be swapped from."""
HOLDOUT_DAYS = {"ml100k": 30.0, "events_1m": 7.0}
"""MovieLens-100k's last week holds too few users for the gate."""


class Clients:
    """Threads looping on Recommend; answers counted per version, bad ones timestamped."""

    def __init__(self, address: str, users: list[str], count: int = 2, pause: float = 0.1) -> None:
        self._address = address
        self._users = users
        self._pause = pause
        self._stop = threading.Event()
        self.versions: Counter[str] = Counter()
        self.failed_at: list[float] = []
        self.degraded_at: list[float] = []
        self._threads = [threading.Thread(target=self._loop, args=(i,)) for i in range(count)]

    def _loop(self, offset: int) -> None:
        with grpc.insecure_channel(self._address) as channel:
            stub = ranking_pb2_grpc.RankingServiceStub(channel)
            n = offset
            while not self._stop.is_set():
                sent = time.time()
                user = self._users[n % len(self._users)]
                n += len(self._threads)
                try:
                    reply = stub.Recommend(
                        ranking_pb2.RecommendRequest(user_id=user, k=10), timeout=5
                    )
                    self.versions[reply.model_version] += 1
                    if reply.degradations:
                        self.degraded_at.append(sent)
                except grpc.RpcError:
                    self.failed_at.append(sent)
                self._stop.wait(self._pause)

    def wait_for(self, version: int, timeout: float) -> float:
        """Until 10 more answers came from ``version``; the time it first answered."""
        target = self.versions[str(version)] + 10
        give_up = time.monotonic() + timeout
        first = None
        while self.versions[str(version)] < target:
            if first is None and self.versions[str(version)]:
                first = time.time()
            if time.monotonic() > give_up:
                raise TimeoutError(f"version {version} never answered")
            time.sleep(0.05)
        return first or time.time()

    @contextmanager
    def running(self) -> Iterator[Clients]:
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join()


def _dataset(name: str) -> Dataset:
    from magpie.datasets import synthetic
    from magpie.datasets.movielens import load_movielens_100k

    if name == "ml100k":
        return load_movielens_100k()
    end = (time.time() // SECONDS_PER_DAY) * SECONDS_PER_DAY
    config = dataclasses.replace(
        synthetic.PRESETS["small"],
        n_products=5_000,
        n_users=20_000,
        n_events=1_000_000,
        start=end - 90 * SECONDS_PER_DAY,
        end=end,
        name="events-1m",
    )
    return synthetic.generate(config)


def _stage_seconds(database_url: str, run_id: str) -> dict[str, float]:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT stage, sum(extract(epoch FROM finished_at - started_at)) FROM"
            " retrain_stage_attempts WHERE run_id = %s GROUP BY stage",
            (run_id,),
        )
        rows = cur.fetchall()
    conn.close()
    return {stage: round(float(seconds), 1) for stage, seconds in rows}


def _publish_started(database_url: str, run_id: str) -> float:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT extract(epoch FROM min(started_at)) FROM retrain_stage_attempts"
            " WHERE run_id = %s AND stage = 'publish'",
            (run_id,),
        )
        (started,) = cur.fetchone()  # type: ignore[misc]
    conn.close()
    return float(started)


def _swap(
    settings: Any, clients: Clients, started: float, version: int, champion: int
) -> dict[str, Any]:
    """Bad answers from ``started`` (the publish began) until ``version`` served, then during
    a rollback to ``champion``."""
    from magpie.modelstore.lifecycle import roll_back

    served = clients.wait_for(version, 120)
    failed = sum(started <= t <= served for t in clients.failed_at)
    degraded = sum(started <= t <= served for t in clients.degraded_at)
    rollback_started = time.time()
    roll_back(settings, "manual", reason=BENCH)
    rolled_back = clients.wait_for(champion, 60)
    failed += sum(rollback_started <= t <= rolled_back for t in clients.failed_at)
    degraded += sum(rollback_started <= t <= rolled_back for t in clients.degraded_at)
    return {
        "swap_seconds": round(served - started, 2),
        "failed_calls_during_swap": failed,
        "degraded_calls_during_swap": degraded,
        "rollback_seconds": round(rolled_back - rollback_started, 2),
    }


def _cycle(name: str, redis_db: int) -> dict[str, Any]:
    from magpie.learning.train import pipeline_config
    from magpie.modelstore.lifecycle import roll_out, train_candidate
    from magpie.platform.demo import bootstrap, settings_for_cli, wait_for_version
    from magpie.platform.local import SERVICES, LocalPlatform, isolated_layout
    from magpie.retraining import runs
    from magpie.retraining.triggers import producer, send_trigger
    from magpie.runtime import schema

    loaded = time.monotonic()
    dataset = _dataset(name)
    with (
        tempfile.TemporaryDirectory(prefix="magpie-retrain-") as state,
        schema.throwaway_database(ADMIN_URL, "magpie_bench", migrate=False) as database_url,
    ):
        pipeline = Path(state) / "pipeline.json"
        pipeline.write_text(json.dumps(RUN_PIPELINE))
        local = LocalPlatform(
            isolated_layout(Path(state)),
            database_url=database_url,
            settings={
                "MAGPIE_LOG_LEVEL": "WARNING",
                "MAGPIE_BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
                "MAGPIE_RESULT_BACKEND": f"redis://127.0.0.1:6379/{redis_db + 1}",
                "MAGPIE_RETRAIN_EVENT_THRESHOLD": "0",
                "MAGPIE_RETRAIN_SCHEDULE_SECONDS": "0",
                "MAGPIE_RETRAIN_PIPELINE": str(pipeline),
                "MAGPIE_RETRAIN_HOLDOUT_DAYS": str(HOLDOUT_DAYS[name]),
            },
        )
        try:
            local.up(list(SERVICES))
            settings = settings_for_cli(local.service_settings())
            champion = bootstrap(
                settings, dataset, pipeline_config(CHAMPION_PIPELINE), progress=False
            )
            wait_for_version(settings, champion, timeout=120)
            setup_seconds = time.monotonic() - loaded
            local.up([], workers=True)
            users = [u.user_id for u in dataset.users][:2000]
            clients = Clients(settings.ranking_addr, users)
            with clients.running():
                clients.wait_for(champion, 60)
                triggered = time.time()
                send_trigger(producer(settings), "manual", {"actor": BENCH})
                give_up = time.monotonic() + 6 * 3600
                run = None
                while time.monotonic() < give_up:
                    with psycopg2.connect(database_url) as conn:
                        newest = runs.latest_runs(conn, settings.model_name, 1)
                    conn.close()
                    run = newest[0] if newest else None
                    ours = run is not None and run.trigger_context.get("actor") == BENCH
                    if ours and run is not None and run.status != "running":
                        break
                    time.sleep(1.0)
                assert run is not None and run.finished_at is not None, run
                swap: dict[str, Any] = {}
                if run.status == "succeeded":
                    assert run.version is not None
                    ended = clients.wait_for(run.version, 120)
                    started = _publish_started(database_url, run.run_id)
                    swap = {"swap": "promoted by the run"}
                    swap |= _swap(settings, clients, started, run.version, champion)
                else:  # rejected by the gate (or failed): the cycle ends with the verdict
                    ended = run.finished_at.timestamp()
                if run.status == "rejected":
                    # A rejected version is never servable: the swap is measured with a
                    # version trained by hand (`magpie train` + `magpie model promote`).
                    manual = train_candidate(settings, dataset, pipeline_config(CHAMPION_PIPELINE))
                    started = time.time()
                    roll_out(settings, manual.version, "manual", reason=f"{BENCH}: the swap")
                    swap = {"swap": "a version trained by hand, promoted by hand"}
                    swap |= _swap(settings, clients, started, manual.version, champion)
            stage_seconds = _stage_seconds(database_url, run.run_id)
        finally:
            local.down()
    return {
        "outcome": run.status,
        "seconds": round(ended - triggered, 1),
        "stage_seconds": stage_seconds,
        **swap,
        "setup_seconds": round(setup_seconds, 1),
        "verdict": run.verdict.get("reason") if run.verdict else None,
        "events": len(dataset.interactions),
        "products": len(dataset.items),
        "holdout_days": HOLDOUT_DAYS[name],
        "answers": sum(clients.versions.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.retrain", description=__doc__)
    parser.add_argument(
        "--datasets", nargs="+", choices=sorted(HOLDOUT_DAYS), default=sorted(HOLDOUT_DAYS)
    )
    args = parser.parse_args()
    cycles = {}
    for position, name in enumerate(sorted(args.datasets, reverse=True)):
        cycles[name] = _cycle(name, redis_db=8 + 2 * position)
        print(json.dumps({name: cycles[name]}, indent=2), flush=True)
    swaps = [c for c in cycles.values() if "rollback_seconds" in c]
    stages = {name: cycle["stage_seconds"] for name, cycle in cycles.items()}
    result = {
        "ml100k_seconds": cycles.get("ml100k", {}).get("seconds"),
        "events_1m_seconds": cycles.get("events_1m", {}).get("seconds"),
        "stage_seconds": stages,
        "failed_calls_during_swap": (
            sum(c["failed_calls_during_swap"] for c in swaps) if swaps else None
        ),
        "degraded_calls_during_swap": (
            sum(c["degraded_calls_during_swap"] for c in swaps) if swaps else None
        ),
        "rollback_seconds": max((c["rollback_seconds"] for c in swaps), default=None),
        "cycles": cycles,
        "run_pipeline": RUN_PIPELINE,
        "protocol": (
            "Per data set: isolated platform, data loaded through the APIs, a first model "
            "(CHAMPION_PIPELINE) rolled out, the worker started; two clients loop on "
            "Recommend (0.1 s pause each). Cycle = manual trigger sent -> first answer by the "
            "new version (or, when the gate rejects it, -> the verdict). Swap window = publish "
            "stage start (when the gate rejected the run's candidate, which is then never "
            "servable: a version trained by hand with CHAMPION_PIPELINE, promoted as `magpie "
            "model promote` does) -> 10 answers by the new version, plus rollback sent -> 10 "
            "answers by the old version."
        ),
    }
    header = ("data set", "cycle s", "failed", "degraded", "rollback s")
    print(
        f"{header[0]:<10} {header[1]:>8}  {header[2]:>6}  {header[3]:>8}  {header[4]:>10}  stages"
    )
    for name, cycle in cycles.items():
        print(
            f"{name:<10} {cycle['seconds']:>8}  {cycle.get('failed_calls_during_swap', '-'):>6}  "
            f"{cycle.get('degraded_calls_during_swap', '-'):>8}  "
            f"{cycle.get('rollback_seconds', '-'):>10}  {cycle['outcome']} {cycle['stage_seconds']}"
        )
    print(f"wrote {write_report('retrain', result)}")


if __name__ == "__main__":
    main()
