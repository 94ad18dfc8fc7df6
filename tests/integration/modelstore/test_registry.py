"""The registry on the real PostgreSQL: lifecycle, aliases, rollback, the promotion log."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg2
import pytest

from magpie.modelstore import registry
from magpie.runtime.db import Connection
from magpie.runtime.errors import AlreadyExists, FailedPrecondition, NotFound

T = TypeVar("T")
NAME = "ranker"
Run = Callable[[Callable[[Connection], Any]], Any]


@pytest.fixture
def run(clean_db: str) -> Iterator[Callable[[Callable[[Connection], T]], T]]:
    """Runs fn(conn) in its own committed transaction, like Database.run_sync."""
    conn = psycopg2.connect(clean_db)

    def run(fn: Callable[[Connection], T]) -> T:
        with conn:
            return fn(conn)

    yield run
    conn.close()


def _register(run: Run, *versions: int) -> None:
    for v in versions:
        run(lambda c, v=v: registry.register_candidate(c, NAME, v, {"ndcg": v / 10}, f"/a/{v}"))


def _statuses(run: Run) -> dict[int, str]:
    return {row.version: row.status for row in run(lambda c: registry.list_versions(c, NAME))}


def _aliases(run: Run) -> dict[str, int]:
    return dict(run(lambda c: registry.aliases(c, NAME)))


def test_versions_count_up_and_registration_is_idempotent(run: Run) -> None:
    assert run(lambda c: registry.next_version(c, NAME)) == 1
    first = run(lambda c: registry.register_candidate(c, NAME, 1, {"ndcg": 0.3}, "/a/1"))
    again = run(lambda c: registry.register_candidate(c, NAME, 1, {"ndcg": 0.3}, "/a/1"))
    with pytest.raises(AlreadyExists):
        run(lambda c: registry.register_candidate(c, NAME, 1, {}, "/elsewhere"))
    assert first == again
    assert isinstance(first, registry.ModelVersion)
    assert (first.status, first.metrics, first.verdict) == ("candidate", {"ndcg": 0.3}, None)
    assert run(lambda c: registry.next_version(c, NAME)) == 2
    assert run(lambda c: registry.next_version(c, "other")) == 1


def test_a_run_reserves_one_version_however_often_it_asks(run: Run) -> None:
    run_id = "7f4d1f5e-2a4c-4c5e-9a1b-3d2f6c8e9a10"
    first = run(lambda c: registry.reserve_version(c, NAME, "/a/{version}", run_id))
    again = run(lambda c: registry.reserve_version(c, NAME, "/a/{version}", run_id))
    other = run(lambda c: registry.reserve_version(c, NAME, "/a/{version}", str(uuid.uuid4())))

    assert first == again
    assert (first.version, first.status, first.artifact_uri) == (1, "training", "/a/1")
    assert other.version == 2
    with pytest.raises(FailedPrecondition):
        run(lambda c: registry.promote(c, NAME, 1, "manual"))  # still training


def test_promote_moves_the_champion_to_previous_and_logs_it(run: Run) -> None:
    _register(run, 1, 2)
    run(lambda c: registry.promote(c, NAME, 1, "manual"))
    run(lambda c: registry.set_staged(c, NAME, 2))
    promoted = run(lambda c: registry.promote(c, NAME, 2, "threshold", reason="better"))
    again = run(lambda c: registry.promote(c, NAME, 2, "threshold"))

    assert promoted == again  # idempotent, and logged once
    assert _aliases(run) == {"champion": 2, "previous": 1}  # staged cleared
    log = run(lambda c: registry.history(c, NAME))
    assert [(p.from_version, p.to_version, p.action, p.trigger) for p in log] == [
        (1, 2, "promote", "threshold"),
        (None, 1, "promote", "manual"),
    ]
    assert log[0].reason == "better"
    assert _statuses(run) == {1: "candidate", 2: "candidate"}


def test_rollback_swaps_champion_and_previous(run: Run) -> None:
    _register(run, 1, 2, 3)
    with pytest.raises(FailedPrecondition):
        run(lambda c: registry.rollback(c, NAME))  # nothing promoted
    for version in (1, 2, 3):
        run(lambda c, v=version: registry.promote(c, NAME, v, "manual"))

    back = run(lambda c: registry.rollback(c, NAME, "manual", "bad CTR"))
    assert back.version == 2 and _aliases(run) == {"champion": 2, "previous": 3}
    forth = run(lambda c: registry.rollback(c, NAME))
    assert forth.version == 3 and _aliases(run) == {"champion": 3, "previous": 2}
    log = run(lambda c: registry.history(c, NAME, limit=2))
    assert [(p.action, p.from_version, p.to_version) for p in log] == [
        ("rollback", 2, 3),
        ("rollback", 3, 2),
    ]


def test_the_log_answers_which_version_served_when(run: Run, clean_db: str) -> None:
    _register(run, 1, 2)
    before = run(lambda c: _now(c))
    run(lambda c: registry.promote(c, NAME, 1, "manual"))
    between = run(lambda c: _now(c))
    run(lambda c: registry.promote(c, NAME, 2, "schedule"))
    after = run(lambda c: _now(c))

    assert run(lambda c: registry.served_at(c, NAME, before)) is None
    assert run(lambda c: registry.served_at(c, NAME, between)).to_version == 1
    assert run(lambda c: registry.served_at(c, NAME, after)).to_version == 2


def test_the_promotion_log_refuses_updates_and_deletes(run: Run, clean_db: str) -> None:
    _register(run, 1)
    run(lambda c: registry.promote(c, NAME, 1, "manual"))

    for statement in ("UPDATE model_promotions SET to_version = 7", "DELETE FROM model_promotions"):
        with pytest.raises(psycopg2.errors.RaiseException):
            run(lambda c, sql=statement: c.cursor().execute(sql))

    assert [p.to_version for p in run(lambda c: registry.history(c, NAME))] == [1]


def test_concurrent_promotions_leave_one_consistent_champion(run: Run, clean_db: str) -> None:
    _register(run, *range(1, 9))
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def promote(version: int) -> None:
        conn = psycopg2.connect(clean_db)
        try:
            barrier.wait()
            with conn:
                registry.promote(conn, NAME, version, "manual")
        except BaseException as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)
        finally:
            conn.close()

    threads = [threading.Thread(target=promote, args=(v,)) for v in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    log = list(reversed(run(lambda c: registry.history(c, NAME))))
    assert len(log) == 8  # serialised: each promotion saw the one before it
    assert [p.from_version for p in log[1:]] == [p.to_version for p in log[:-1]]
    assert _aliases(run) == {"champion": log[-1].to_version, "previous": log[-1].from_version}


def test_rejected_versions_are_never_served(run: Run) -> None:
    _register(run, 1, 2)
    run(lambda c: registry.promote(c, NAME, 1, "manual"))
    rejected = run(lambda c: registry.reject(c, NAME, 2, {"reason": "worse than popularity"}))
    with pytest.raises(FailedPrecondition):
        run(lambda c: registry.promote(c, NAME, 2, "manual"))
    with pytest.raises(FailedPrecondition):
        run(lambda c: registry.set_staged(c, NAME, 2))
    with pytest.raises(FailedPrecondition):
        run(lambda c: registry.reject(c, NAME, 1))  # the champion cannot be rejected
    with pytest.raises(NotFound):
        run(lambda c: registry.promote(c, NAME, 9, "manual"))

    assert rejected.status == "rejected"
    assert rejected.verdict == {"reason": "worse than popularity"}
    assert _aliases(run) == {"champion": 1}


def _now(conn: Connection) -> Any:
    with conn.cursor() as cur:
        cur.execute("SELECT clock_timestamp()")
        row = cur.fetchone()
    assert row is not None
    return row[0]
