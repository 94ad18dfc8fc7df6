"""A run's state in PostgreSQL: single flight, stage leases, conditional completion."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg2
import pytest

from magpie.retraining import runs
from magpie.runtime.db import Connection

T = TypeVar("T")
Tx = Callable[[Callable[[Connection], Any]], Any]
MODEL = "magpie"


@pytest.fixture
def tx(clean_db: str) -> Iterator[Callable[[Callable[[Connection], T]], T]]:
    """Runs fn(conn) in its own committed transaction, as the workers do."""
    conn = psycopg2.connect(clean_db)

    def run(fn: Callable[[Connection], T]) -> T:
        with conn:
            return fn(conn)

    yield run
    conn.close()


def test_a_burst_of_triggers_is_one_run(tx: Tx) -> None:
    started = [tx(lambda c: runs.start_run(c, MODEL, "manual")) for _ in range(5)]

    assert [created for _, created in started] == [True, False, False, False, False]
    assert len({run.run_id for run, _ in started}) == 1
    assert started[0][0].stage == "snapshot" and started[0][0].status == "running"


def test_a_live_lease_turns_a_duplicate_away_and_an_expired_one_is_taken_over(tx: Tx) -> None:
    run, _ = tx(lambda c: runs.start_run(c, MODEL, "schedule"))

    first = tx(lambda c: runs.claim(c, run.run_id, "worker-a", 60))
    duplicate = tx(lambda c: runs.claim(c, run.run_id, "worker-b", 60))
    tx(lambda c: c.cursor().execute("UPDATE retrain_runs SET lease_until = now() - interval '1s'"))
    taken_over = tx(lambda c: runs.claim(c, run.run_id, "worker-b", 60))

    assert first is not None and first.holder == "worker-a"
    assert duplicate is None
    assert taken_over is not None and taken_over.holder == "worker-b"
    assert not tx(lambda c: runs.heartbeat(c, run.run_id, "worker-a", 60))  # a lost lease


def test_a_stage_completes_once_by_its_holder(tx: Tx) -> None:
    run, _ = tx(lambda c: runs.start_run(c, MODEL, "manual"))
    tx(lambda c: runs.claim(c, run.run_id, "worker-a", 60))

    stale = tx(lambda c: runs.complete_stage(c, run.run_id, "worker-b", "snapshot", {}))
    moved = tx(
        lambda c: runs.complete_stage(
            c, run.run_id, "worker-a", "snapshot", {"snapshot": {"through_seq": 9}, "version": 3}
        )
    )
    again = tx(lambda c: runs.complete_stage(c, run.run_id, "worker-a", "snapshot", {}))

    assert stale is None and again is None
    assert moved is not None and moved.stage == "embed" and moved.holder is None
    assert (moved.snapshot, moved.version) == ({"through_seq": 9}, 3)


def test_a_pending_poll_is_not_a_failed_attempt(tx: Tx) -> None:
    run, _ = tx(lambda c: runs.start_run(c, MODEL, "manual"))
    for holder in ("a", "b", "c", "d"):
        tx(lambda c, h=holder: runs.record_attempt(c, run.run_id, "snapshot", h))
        tx(
            lambda c, h=holder: runs.record_attempt(
                c, run.run_id, "snapshot", h, "retry", {"pending": "Job running"}
            )
        )
    tx(lambda c: runs.record_attempt(c, run.run_id, "snapshot", "e"))
    tx(lambda c: runs.record_attempt(c, run.run_id, "snapshot", "f"))  # e died: lost

    assert tx(lambda c: runs.attempts(c, run.run_id, "snapshot")) == 2


def test_a_finished_run_frees_the_model_for_the_next(tx: Tx) -> None:
    run, _ = tx(lambda c: runs.start_run(c, MODEL, "manual"))
    ended = tx(lambda c: runs.finish(c, run.run_id, "failed", {"error": "boom"}))
    following, created = tx(lambda c: runs.start_run(c, MODEL, "threshold"))

    assert ended is not None and ended.status == "failed" and ended.error == "boom"
    assert ended.finished_at is not None
    assert created and following.run_id != run.run_id
    assert tx(lambda c: runs.resumable_runs(c, idle_seconds=0)) == [following.run_id]
