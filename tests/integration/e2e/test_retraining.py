"""Retraining end to end: real Celery workers and beat, real brokers (Redis, RabbitMQ, a
Redis of the test's own that it kills), PostgreSQL, the five services and Triton. Models
are trained on what the platform stored, gated, rolled out and rolled back while clients
loop on Recommend."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg2
import pytest

from magpie.modelstore import registry
from magpie.modelstore.publish import published_versions
from magpie.retraining import runs
from magpie.retraining.triggers import events_since_last_run, producer, send_trigger
from magpie.runtime.settings import Settings
from magpie.v1 import common_pb2, feedback_pb2, feedback_pb2_grpc
from services.feedback.config import RETRAIN_CHECK_SECONDS
from tests.integration.e2e.clients import Clients
from tests.integration.e2e.conftest import Platform
from tests.integration.e2e.workers import all_runs, started, wait_for, worker_env
from tests.support import free_port, redis_server_command, run_magpie

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

RUN_SECONDS = 600.0
"""Longest a whole run may take here (two cores shared with the platform)."""


def _aliases(settings: Settings) -> dict[str, int]:
    with psycopg2.connect(settings.database_url) as conn:
        found = dict(registry.aliases(conn, settings.model_name))
    conn.close()
    return found


def _send_events(platform: Platform, count: int) -> None:
    """``count`` new clicks by the world's users on its products, through the API."""
    users = [u.user_id for u in platform.world.loaded.users]
    items = [i.item_id for i in platform.world.loaded.items]
    events = [
        feedback_pb2.Event(
            event_id=f"retrain-{uuid.uuid4().hex}",
            user_id=users[n % len(users)],
            product_id=items[(n * 7) % len(items)],
            event_type=common_pb2.EVENT_TYPE_CLICK,
        )
        for n in range(count)
    ]
    with grpc.insecure_channel(platform.settings.feedback_addr) as channel:
        stub = feedback_pb2_grpc.FeedbackServiceStub(channel)
        for start in range(0, count, 500):
            reply = stub.RecordEvents(
                feedback_pb2.RecordEventsRequest(events=events[start : start + 500]), timeout=30
            )
            assert reply.rejected == 0


def _stage_started(settings: Settings, run_id: str, stage: str) -> float:
    """When the first attempt of a stage began (Unix seconds, the database's clock)."""
    with psycopg2.connect(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT extract(epoch FROM min(started_at)) FROM retrain_stage_attempts"
            " WHERE run_id = %s AND stage = %s",
            (run_id, stage),
        )
        (started,) = cur.fetchone()  # type: ignore[misc]
    conn.close()
    return float(started)


def _assert_traced(platform: Platform, run: runs.Run) -> None:
    """The run's start links to a feedback call that stored events, and every stage's task
    (each in a child that then exited) reached the receiver."""
    give_up = time.monotonic() + 15
    while True:
        spans = list(platform.traces.spans)
        start = [s for s in spans if s.name == "retrain start"]
        stages = {
            s.attributes.get("magpie.retrain.run_id")
            for s in spans
            if s.service == "worker" and "magpie.retrain.advance" in s.name
        }
        advances = [s for s in spans if "magpie.retrain.advance" in s.name and s.kind == "consumer"]
        if (start and len(advances) >= 6) or time.monotonic() > give_up:
            break
        time.sleep(0.5)
    feedback_calls = {
        s.trace_id for s in spans if s.service == "feedback" and s.name.endswith("RecordEvents")
    }
    linked = [s for s in start if s.attributes.get("magpie.retrain.run_id") == run.run_id]
    assert linked and set(linked[0].links) & feedback_calls, [s.name for s in start]
    assert run.run_id in stages
    assert len(advances) >= 6  # snapshot .. promote, one child each


def _new_runs(settings: Settings, before: set[str]) -> list[runs.Run]:
    return [r for r in all_runs(settings.database_url) if r.run_id not in before]


async def test_the_threshold_starts_one_run_served_and_rolled_back_without_a_bad_answer(
    platform: Platform, tmp_path: Path
) -> None:
    settings = platform.settings
    before = {r.run_id for r in all_runs(settings.database_url)}
    with psycopg2.connect(settings.database_url) as conn:
        threshold = events_since_last_run(conn, settings.model_name) + 1500
    conn.close()
    platform.local.stop("feedback")
    platform.local.up(["feedback"], settings={"MAGPIE_RETRAIN_EVENT_THRESHOLD": str(threshold)})
    # One task per prefork child: each child must flush its spans before it exits (#4916).
    env = worker_env(platform, tmp_path, retrain_tasks_per_child="1")
    champion = _aliases(settings)["champion"]
    try:
        with started("worker", env, tmp_path) as worker:
            async with Clients(settings.ranking_addr, count=2, interval=0.1) as clients:
                await clients.answered_by(champion)
                await asyncio.to_thread(_send_events, platform, 1000)
                # An absence has nothing to wait on: two threshold checks' worth of time.
                await asyncio.sleep(2 * RETRAIN_CHECK_SECONDS + 1)
                below = _new_runs(settings, before)
                await asyncio.to_thread(_send_events, platform, 1000)
                run = await asyncio.to_thread(
                    wait_for,
                    settings.database_url,
                    lambda r: r.run_id not in before,
                    60,
                    "a threshold run",
                    worker,
                )
                # A burst while it runs: manual triggers and more events join the same run.
                burst = producer(settings)
                for _ in range(5):
                    send_trigger(burst, "manual", {"actor": "burst"})
                await asyncio.to_thread(_send_events, platform, 1000)
                training = await asyncio.to_thread(
                    wait_for,
                    settings.database_url,
                    lambda r: "epoch" in r.progress,
                    RUN_SECONDS,
                    "training progress",
                    worker,
                )
                status = run_magpie(env, "retrain", "status", run.run_id)
                done = await asyncio.to_thread(
                    wait_for,
                    settings.database_url,
                    lambda r: r.status != "running",
                    RUN_SECONDS,
                    "the end of the run",
                    worker,
                )
                assert done.status == "succeeded", (done.error, done.verdict)
                await clients.answered_by(done.version)  # served: the rollout finished
                rolled_out = time.time()
                rollback_started = time.monotonic()
                rolled = run_magpie(env, "model", "rollback", "--reason", "test")
                await clients.answered_by(champion)
                rollback_seconds = time.monotonic() - rollback_started
                rolled_back = time.time()
            history = run_magpie(env, "model", "history", "--limit", "2")
    finally:
        platform.local.stop("feedback")
        platform.local.up(["feedback"])

    assert below == []
    assert [r.run_id for r in _new_runs(settings, before)] == [run.run_id]  # exactly one
    assert run.trigger == "threshold" and run.trigger_context["events"] >= threshold
    assert training.stage == "train" and training.progress["epochs"] > 0
    assert f"run {run.run_id}" in status and "epoch" in status
    assert done.verdict["accepted"] and "baseline" in done.verdict["reason"]
    swap_started = _stage_started(settings, run.run_id, "publish")
    assert clients.failures == []  # no failed call, ever
    # Strictly none degraded while the candidate is loaded, switched to and rolled back
    # (while it trains, the two cores are the training's: a hop may miss its budget then).
    assert clients.degraded_between(swap_started, rolled_back) == []
    assert rolled_back > rolled_out > swap_started
    assert clients.versions[str(done.version)] >= 20
    assert f"rolled back to version {champion}" in rolled and rollback_seconds < 10
    assert _aliases(settings) == {"champion": champion, "previous": done.version}
    assert history.splitlines()[1].split()[2:6] == [
        "rollback",
        str(done.version),
        str(champion),
        "manual",
    ]
    assert history.splitlines()[2].split()[2:6] == [
        "promote",
        str(champion),
        str(done.version),
        "threshold",
    ]


def test_a_candidate_trained_on_shuffled_events_is_rejected_and_never_served(
    platform: Platform, tmp_path: Path
) -> None:
    """Through RabbitMQ this time: the broker is configuration."""
    settings = platform.settings
    rabbit = {"broker_url": "amqp://guest:guest@127.0.0.1:5672//"}
    env = worker_env(platform, tmp_path, **rabbit)
    before = {r.run_id for r in all_runs(settings.database_url)}
    served = _aliases(settings)
    repository = Path(settings.model_repository) / settings.triton_model
    with started("worker", env, tmp_path) as worker:
        run_magpie(env, "retrain", "start", "--shuffle-events")
        done = wait_for(
            settings.database_url,
            lambda r: r.run_id not in before and r.status != "running",
            RUN_SECONDS,
            "the shuffled run",
            worker,
        )
    with psycopg2.connect(settings.database_url) as conn:
        version = registry.get_version(conn, settings.model_name, done.version)
    conn.close()

    assert done.status == "rejected" and done.params["shuffle_events"]
    assert not done.verdict["accepted"]
    assert done.verdict["reason"].startswith("rejected: ") and "baseline" in done.verdict["reason"]
    assert version.status == "rejected" and version.verdict == done.verdict
    assert _aliases(settings) == served  # never staged, never served
    assert done.version not in published_versions(repository)
    assert "amqp://guest:**@127.0.0.1:5672//" in worker.output()


@contextlib.contextmanager
def _private_redis(tmp_path: Path) -> Iterator[tuple[str, object]]:
    """A Redis of this test's own (no persistence), and a function that restarts it."""
    port = free_port()
    command = redis_server_command(port, tmp_path)
    process = [subprocess.Popen(command, stdout=subprocess.DEVNULL)]

    def restart() -> None:
        process[0].kill()
        process[0].wait()
        process[0] = subprocess.Popen(command, stdout=subprocess.DEVNULL)

    try:
        yield f"redis://127.0.0.1:{port}/0", restart
    finally:
        process[0].kill()
        process[0].wait()


def test_a_worker_killed_mid_training_changes_nothing_served_and_the_run_resumes(
    platform: Platform, tmp_path: Path
) -> None:
    """SIGKILL of the worker during training, then a broker restart mid-run: the served
    model never changes until the run succeeds, nothing half-published appears, and the
    run resumes once the dead worker's lease expired."""
    settings = platform.settings
    with _private_redis(tmp_path) as (broker, restart_broker):
        env = worker_env(platform, tmp_path, broker_url=broker, gate_margin="0.5")
        before = {r.run_id for r in all_runs(settings.database_url)}
        served = _aliases(settings)
        repository = Path(settings.model_repository) / settings.triton_model
        published = published_versions(repository)
        with started("worker", env, tmp_path) as first:
            send_trigger(producer(settings.model_copy(update={"broker_url": broker})), "manual")
            training = wait_for(
                settings.database_url,
                lambda r: r.run_id not in before and r.stage == "train" and "epoch" in r.progress,
                RUN_SECONDS,
                "training",
                first,
            )
            first.kill()
        killed_at = time.monotonic()
        after_kill = (_aliases(settings), published_versions(repository))
        bundle = Path(settings.artifact_dir) / str(training.version)
        with started("worker", env, tmp_path) as second, started("beat", env, tmp_path):
            resumed = wait_for(
                settings.database_url,
                lambda r: r.run_id == training.run_id and r.stage != "train",
                RUN_SECONDS,
                "the resumed training",
                second,
            )
            restart_broker()
            done = wait_for(
                settings.database_url,
                lambda r: r.run_id == training.run_id and r.status != "running",
                RUN_SECONDS,
                "the end of the run",
                second,
            )
    with psycopg2.connect(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT stage, attempt, outcome FROM retrain_stage_attempts WHERE run_id = %s"
            " AND stage = 'train' ORDER BY attempt",
            (training.run_id,),
        )
        attempts = cur.fetchall()
    conn.close()

    assert after_kill == (served, published)  # nothing served changed, nothing landed
    assert resumed.stage in ("evaluate", "publish", "promote") or resumed.status != "running"
    assert done.status == "succeeded", (done.error, done.verdict)
    assert [(a[1], a[2]) for a in attempts] == [(1, "lost"), (2, "done")]
    assert bundle.is_dir() and not list(bundle.parent.glob(".staging-*"))
    assert time.monotonic() - killed_at > float(env["MAGPIE_RETRAIN_LEASE_SECONDS"])
    assert _aliases(settings)["champion"] == done.version
