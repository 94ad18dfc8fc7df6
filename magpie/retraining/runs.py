"""Retraining runs in PostgreSQL: one row per run, advanced one stage at a time.

A run is created by a trigger (the schedule, the event threshold, a person) and single
flight is the database's: a unique partial index allows one ``running`` run per model,
so a burst of triggers collapses into the run that won the insert. Each stage is
executed under a lease (``holder``, ``lease_until``) that the executing worker extends
while it lives; a duplicate delivery of the same stage finds the lease held and does
nothing, and a stage whose worker died is claimable again once its lease expired. A
stage's completion moves ``stage`` forward with a conditional update (the stage it
completed, the holder that completed it), so no stage is ever applied twice.

Every function takes an open psycopg2 connection and runs inside the caller's
transaction.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import psycopg2.errors

from magpie.runtime.db import Connection
from magpie.runtime.errors import NotFound

__all__ = [
    "STAGES",
    "Run",
    "RunStatus",
    "Stage",
    "Trigger",
    "attempts",
    "claim",
    "complete_stage",
    "finish",
    "get_run",
    "heartbeat",
    "latest_runs",
    "record_attempt",
    "record_finished_run",
    "release",
    "resumable_runs",
    "running_run",
    "start_run",
    "update_progress",
]

Stage = Literal["snapshot", "embed", "train", "evaluate", "publish", "promote"]
STAGES: tuple[Stage, ...] = ("snapshot", "embed", "train", "evaluate", "publish", "promote")
"""In order. ``snapshot`` fixes the events and the holdout; ``embed`` embeds the products
whose text changed; ``train`` writes the candidate's bundle; ``evaluate`` is the gate;
``publish`` lands it in Triton and the serving replicas beside the champion; ``promote``
switches the champion alias once every replica is ready."""
RunStatus = Literal["running", "succeeded", "rejected", "failed"]
Trigger = Literal["schedule", "threshold", "manual"]


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    model_name: str
    trigger: Trigger
    trigger_context: dict[str, Any]
    status: RunStatus
    stage: Stage
    version: int | None
    params: dict[str, Any]
    snapshot: dict[str, Any]
    progress: dict[str, Any]
    verdict: dict[str, Any] | None
    error: str
    holder: str | None
    lease_until: datetime.datetime | None
    created_at: datetime.datetime
    updated_at: datetime.datetime
    finished_at: datetime.datetime | None

    @property
    def next_stage(self) -> Stage | None:
        position = STAGES.index(self.stage)
        return STAGES[position + 1] if position + 1 < len(STAGES) else None


_COLUMNS = (
    "run_id, model_name, trigger, trigger_context, status, stage, version, params, snapshot,"
    " progress, verdict, error, holder, lease_until, created_at, updated_at, finished_at"
)


def _run(row: tuple[Any, ...]) -> Run:
    run_id, *rest = row
    return Run(str(run_id), *rest)


def _one(conn: Connection, sql: str, params: tuple[Any, ...]) -> Run | None:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    return None if row is None else _run(row)


def get_run(conn: Connection, run_id: str) -> Run:
    """Raises ``NotFound`` for an unknown run."""
    run = _one(conn, f"SELECT {_COLUMNS} FROM retrain_runs WHERE run_id = %s", (run_id,))
    if run is None:
        raise NotFound(f"no retraining run {run_id}")
    return run


def running_run(conn: Connection, model_name: str) -> Run | None:
    return _one(
        conn,
        f"SELECT {_COLUMNS} FROM retrain_runs WHERE model_name = %s AND status = 'running'",
        (model_name,),
    )


def start_run(
    conn: Connection,
    model_name: str,
    trigger: Trigger,
    context: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
) -> tuple[Run, bool]:
    """A new run at its first stage, or the run already running (single flight): returns
    (run, whether this call created it)."""
    run_id = str(uuid.uuid4())
    with conn.cursor() as cur:
        cur.execute("SAVEPOINT start_run")
        try:
            cur.execute(
                "INSERT INTO retrain_runs (run_id, model_name, trigger, trigger_context, stage,"
                " params) VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    run_id,
                    model_name,
                    trigger,
                    json.dumps(dict(context or {})),
                    STAGES[0],
                    json.dumps(dict(params or {})),
                ),
            )
        except psycopg2.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT start_run")
            existing = running_run(conn, model_name)
            if existing is None:  # finished between our insert and this read: try once more
                return start_run(conn, model_name, trigger, context, params)
            return existing, False
    return get_run(conn, run_id), True


def claim(conn: Connection, run_id: str, holder: str, lease_seconds: float) -> Run | None:
    """Takes the lease on the run's current stage for ``holder``; None when the run is
    finished or a live holder has it (a duplicate delivery, or another worker)."""
    return _one(
        conn,
        f"""
        UPDATE retrain_runs
        SET holder = %s, lease_until = now() + make_interval(secs => %s), updated_at = now()
        WHERE run_id = %s AND status = 'running'
          AND (holder IS NULL OR holder = %s OR lease_until < now())
        RETURNING {_COLUMNS}
        """,
        (holder, lease_seconds, run_id, holder),
    )


def heartbeat(conn: Connection, run_id: str, holder: str, lease_seconds: float) -> bool:
    """Extends ``holder``'s lease; False when it lost the lease (it must stop)."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE retrain_runs SET lease_until = now() + make_interval(secs => %s)"
            " WHERE run_id = %s AND holder = %s AND status = 'running'",
            (lease_seconds, run_id, holder),
        )
        return cur.rowcount == 1


def release(conn: Connection, run_id: str, holder: str) -> None:
    """Gives the lease up without completing the stage (it will be retried)."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE retrain_runs SET holder = NULL, lease_until = NULL, updated_at = now()"
            " WHERE run_id = %s AND holder = %s",
            (run_id, holder),
        )


def _updates(fields: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """SET clauses for the given columns; JSON columns are merged, not replaced."""
    merged = {"snapshot", "progress", "params", "trigger_context"}
    clauses, values = [], []
    for column, value in fields.items():
        if column in merged:
            clauses.append(f"{column} = {column} || %s::jsonb")
            values.append(json.dumps(value))
        elif column == "verdict":
            clauses.append("verdict = %s::jsonb")
            values.append(json.dumps(value))
        elif column in ("version", "error"):
            clauses.append(f"{column} = %s")
            values.append(value)
        else:
            raise ValueError(f"retrain_runs.{column} is not set by stages")
    return "".join(f", {c}" for c in clauses), values


def complete_stage(
    conn: Connection, run_id: str, holder: str, stage: Stage, fields: Mapping[str, Any]
) -> Run | None:
    """Records ``stage`` as done by ``holder`` and moves the run to the next stage (the last
    one finishes it as ``succeeded``); None when ``holder`` no longer held that stage."""
    position = STAGES.index(stage)
    following = STAGES[position + 1] if position + 1 < len(STAGES) else None
    extra, values = _updates(fields)
    finished = ", status = 'succeeded', finished_at = now()" if following is None else ""
    return _one(
        conn,
        f"""
        UPDATE retrain_runs
        SET stage = %s, holder = NULL, lease_until = NULL, updated_at = now(){extra}{finished}
        WHERE run_id = %s AND stage = %s AND holder = %s AND status = 'running'
        RETURNING {_COLUMNS}
        """,
        (following or stage, *values, run_id, stage, holder),
    )


def finish(
    conn: Connection,
    run_id: str,
    status: Literal["rejected", "failed"],
    fields: Mapping[str, Any],
    holder: str | None = None,
) -> Run | None:
    """Ends a running run as rejected (by the gate) or failed; with ``holder`` only while it
    holds the lease."""
    extra, values = _updates(fields)
    guard = " AND holder = %s" if holder is not None else ""
    return _one(
        conn,
        f"""
        UPDATE retrain_runs
        SET status = %s, holder = NULL, lease_until = NULL, updated_at = now(),
            finished_at = now(){extra}
        WHERE run_id = %s AND status = 'running'{guard}
        RETURNING {_COLUMNS}
        """,
        (status, *values, run_id, *(() if holder is None else (holder,))),
    )


def update_progress(conn: Connection, run_id: str, progress: Mapping[str, Any]) -> None:
    """Merges ``progress`` (epoch, metrics so far) into a running run; a training Job
    reports through this too, without holding the lease."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE retrain_runs SET progress = progress || %s::jsonb, updated_at = now()"
            " WHERE run_id = %s AND status = 'running'",
            (json.dumps(dict(progress)), run_id),
        )


def record_attempt(
    conn: Connection,
    run_id: str,
    stage: Stage,
    holder: str,
    outcome: Literal["done", "failed", "lost", "retry"] | None = None,
    detail: Mapping[str, Any] | None = None,
) -> int:
    """Opens an attempt of ``stage`` by ``holder`` (outcome None) or closes its open attempt;
    an open attempt of another holder is closed as ``lost`` (its worker died). Returns the
    attempt number."""
    with conn.cursor() as cur:
        if outcome is None:
            cur.execute(
                "UPDATE retrain_stage_attempts SET outcome = 'lost', finished_at = now()"
                " WHERE run_id = %s AND stage = %s AND outcome IS NULL",
                (run_id, stage),
            )
            cur.execute(
                "INSERT INTO retrain_stage_attempts (run_id, stage, attempt, holder)"
                " SELECT %s, %s, coalesce(max(attempt), 0) + 1, %s FROM retrain_stage_attempts"
                " WHERE run_id = %s AND stage = %s RETURNING attempt",
                (run_id, stage, holder, run_id, stage),
            )
        else:
            cur.execute(
                "UPDATE retrain_stage_attempts SET outcome = %s, finished_at = now(),"
                " detail = %s::jsonb WHERE run_id = %s AND stage = %s AND holder = %s"
                " AND outcome IS NULL RETURNING attempt",
                (outcome, json.dumps(dict(detail or {})), run_id, stage, holder),
            )
        row = cur.fetchone()
    return int(row[0]) if row else 0


def attempts(conn: Connection, run_id: str, stage: Stage) -> int:
    """How many times ``stage`` of the run was started and failed or was lost (a poll of
    work still running elsewhere, a pending Job, does not count)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM retrain_stage_attempts WHERE run_id = %s AND stage = %s"
            " AND NOT (outcome = 'retry' AND detail ? 'pending')",
            (run_id, stage),
        )
        row = cur.fetchone()
    return int(row[0]) if row else 0


def resumable_runs(conn: Connection, idle_seconds: float) -> list[str]:
    """Running runs that nobody holds (or whose holder's lease expired) and that have not
    moved for ``idle_seconds``: their next task was lost (a broker restart) or their
    worker died. The sweeper sends them on again."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT run_id FROM retrain_runs WHERE status = 'running'"
            " AND (holder IS NULL OR lease_until < now())"
            " AND updated_at < now() - make_interval(secs => %s) ORDER BY created_at",
            (idle_seconds,),
        )
        return [str(row[0]) for row in cur.fetchall()]


def latest_runs(conn: Connection, model_name: str, limit: int = 10) -> list[Run]:
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM retrain_runs WHERE model_name = %s"
            " ORDER BY created_at DESC LIMIT %s",
            (model_name, limit),
        )
        return [_run(row) for row in cur.fetchall()]


def record_finished_run(
    conn: Connection,
    model_name: str,
    context: Mapping[str, Any],
    version: int,
    through_seq: int,
) -> Run:
    """Records a model trained outside the worker (the platform's first model) as a
    succeeded manual run, so that the event threshold counts from its data."""
    run_id = str(uuid.uuid4())
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO retrain_runs (run_id, model_name, trigger, trigger_context, status,"
            " stage, version, snapshot, finished_at) VALUES (%s, %s, 'manual', %s, 'succeeded',"
            " %s, %s, %s, now())",
            (
                run_id,
                model_name,
                json.dumps(dict(context)),
                STAGES[-1],
                version,
                json.dumps({"through_seq": through_seq}),
            ),
        )
    return get_run(conn, run_id)
