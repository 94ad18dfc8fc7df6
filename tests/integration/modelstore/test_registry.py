"""Registry lifecycle on the real PostgreSQL: promote, reject, rollback, one promoted."""

from __future__ import annotations

import threading
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


def test_versions_count_up_and_registration_is_idempotent(run: Run) -> None:
    assert run(lambda c: registry.next_version(c, NAME)) == 1
    first = run(lambda c: registry.register_candidate(c, NAME, 1, {"ndcg": 0.3}, "/a/1"))
    again = run(lambda c: registry.register_candidate(c, NAME, 1, {"ndcg": 0.3}, "/a/1"))
    with pytest.raises(AlreadyExists):
        run(lambda c: registry.register_candidate(c, NAME, 1, {}, "/elsewhere"))
    assert first == again
    assert isinstance(first, registry.ModelVersion)
    assert (first.status, first.metrics, first.promoted_at) == ("candidate", {"ndcg": 0.3}, None)
    assert run(lambda c: registry.next_version(c, NAME)) == 2
    assert run(lambda c: registry.next_version(c, "other")) == 1


def test_promote_retires_the_current_version(run: Run) -> None:
    _register(run, 1, 2)
    run(lambda c: registry.promote(c, NAME, 1))
    promoted = run(lambda c: registry.promote(c, NAME, 2))
    assert isinstance(promoted, registry.ModelVersion)
    assert promoted.status == "promoted" and promoted.promoted_at is not None
    assert _statuses(run) == {2: "promoted", 1: "retired"}
    active = run(lambda c: registry.active_version(c, NAME))
    assert isinstance(active, registry.ModelVersion) and active.version == 2
    assert run(lambda c: registry.promote(c, NAME, 2)) == promoted  # idempotent


def test_the_database_allows_one_promoted_version(run: Run) -> None:
    _register(run, 1, 2)
    run(lambda c: registry.promote(c, NAME, 1))

    def sneak(conn: Connection) -> None:
        with conn.cursor() as cur:
            cur.execute("UPDATE model_versions SET status = 'promoted' WHERE version = 2")

    with pytest.raises(psycopg2.errors.UniqueViolation):
        run(sneak)
    assert _statuses(run) == {2: "candidate", 1: "promoted"}


def test_concurrent_promotions_leave_exactly_one_promoted(run: Run, clean_db: str) -> None:
    versions = range(1, 9)
    _register(run, *versions)
    errors: list[BaseException] = []

    def promote(version: int) -> None:
        try:
            with psycopg2.connect(clean_db) as conn:
                registry.promote(conn, NAME, version)
        except BaseException as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(_statuses(run).values()) == ["promoted"] + ["retired"] * 7


def test_reject_only_candidates(run: Run) -> None:
    _register(run, 1, 2)
    run(lambda c: registry.promote(c, NAME, 1))
    rejected = run(lambda c: registry.reject(c, NAME, 2))
    with pytest.raises(FailedPrecondition):
        run(lambda c: registry.promote(c, NAME, 2))
    with pytest.raises(FailedPrecondition):
        run(lambda c: registry.reject(c, NAME, 1))
    with pytest.raises(NotFound):
        run(lambda c: registry.promote(c, NAME, 9))
    assert isinstance(rejected, registry.ModelVersion) and rejected.status == "rejected"
    assert _statuses(run) == {2: "rejected", 1: "promoted"}


def test_rollback_walks_back_through_promoted_versions(run: Run) -> None:
    _register(run, 1, 2, 3, 4)
    for version in (1, 3, 4):  # 2 stays a candidate: it was never served
        run(lambda c, v=version: registry.promote(c, NAME, v))
    first = run(lambda c: registry.rollback(c, NAME))
    second = run(lambda c: registry.rollback(c, NAME))
    with pytest.raises(FailedPrecondition):
        run(lambda c: registry.rollback(c, NAME))
    assert isinstance(first, registry.ModelVersion) and first.version == 3
    assert isinstance(second, registry.ModelVersion) and second.version == 1
    assert _statuses(run) == {4: "retired", 3: "retired", 2: "candidate", 1: "promoted"}


def test_rollback_needs_a_promoted_version(run: Run) -> None:
    _register(run, 1)
    with pytest.raises(FailedPrecondition):
        run(lambda c: registry.rollback(c, NAME))
    assert _statuses(run) == {1: "candidate"}
