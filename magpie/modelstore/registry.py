"""The model registry: versions of each model and their lifecycle, in ``model_versions``.

    candidate ──promote──> promoted ──(another version promoted)──> retired
        └──────reject────> rejected                 retired ──promote/rollback──> promoted

At most one version per model is ``promoted`` (a unique partial index enforces it);
promoting retires the current one in the same transaction. ``rollback`` promotes the
newest retired version *below* the promoted one that has been promoted before, so
repeated rollbacks walk back through history; the version rolled away from is retired
and can be promoted again by hand.

Every function takes an open psycopg2 connection and runs inside the caller's
transaction: ``database.run_sync(lambda conn: promote(conn, "ranker", 3))`` or
``with psycopg2.connect(url) as conn: ...``. All of them are idempotent, as
:class:`magpie.runtime.db.Database` retries require.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from magpie.runtime.db import Connection
from magpie.runtime.errors import AlreadyExists, FailedPrecondition, NotFound

__all__ = [
    "ModelVersion",
    "Status",
    "active_version",
    "get_version",
    "list_versions",
    "next_version",
    "promote",
    "register_candidate",
    "reject",
    "rollback",
]

"""Registry name of Magpie's bundles (retrieval and ranker are versioned together)."""

Status = Literal["candidate", "promoted", "rejected", "retired"]


@dataclass(frozen=True, slots=True)
class ModelVersion:
    model_name: str
    version: int
    status: Status
    metrics: dict[str, Any]
    artifact_uri: str
    created_at: datetime.datetime
    promoted_at: datetime.datetime | None


_COLUMNS = "model_name, version, status, metrics, artifact_uri, created_at, promoted_at"


def _row(row: tuple[Any, ...]) -> ModelVersion:
    name, version, status, metrics, uri, created, promoted = row
    return ModelVersion(name, version, cast(Status, status), metrics, uri, created, promoted)


def next_version(conn: Connection, name: str) -> int:
    """One more than the highest version registered for ``name`` (1 for the first)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COALESCE(max(version), 0) + 1 FROM model_versions WHERE model_name = %s",
            (name,),
        )
        row = cur.fetchone()
    assert row is not None  # an aggregate always returns one row
    return int(row[0])


def get_version(conn: Connection, name: str, version: int, *, lock: bool = False) -> ModelVersion:
    """Raises ``NotFound`` if ``name`` has no such version."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM model_versions WHERE model_name = %s AND version = %s"
            + (" FOR UPDATE" if lock else ""),
            (name, version),
        )
        row = cur.fetchone()
    if row is None:
        raise NotFound(f"model {name} has no version {version}")
    return _row(row)


def register_candidate(
    conn: Connection, name: str, version: int, metrics: Mapping[str, Any], artifact_uri: str
) -> ModelVersion:
    """Record a new candidate version; repeating the same call returns the same row.

    Raises ``AlreadyExists`` if the version exists with another artifact.
    """
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO model_versions (model_name, version, metrics, artifact_uri)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (model_name, version) DO NOTHING",
            (name, version, json.dumps(dict(metrics)), artifact_uri),
        )
    row = get_version(conn, name, version)
    if row.artifact_uri != artifact_uri:
        raise AlreadyExists(f"model {name} version {version} exists ({row.artifact_uri})")
    return row


def _lock_model(conn: Connection, name: str) -> None:
    """Serialise lifecycle changes of one model (two promotions must not interleave)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"model_versions:{name}",))


def promote(conn: Connection, name: str, version: int) -> ModelVersion:
    """Make ``version`` the promoted one, retiring the current one, in one transaction.

    Raises ``NotFound`` for an unknown version, ``FailedPrecondition`` for a rejected one.
    """
    _lock_model(conn, name)
    row = get_version(conn, name, version, lock=True)
    if row.status == "promoted":
        return row
    if row.status == "rejected":
        raise FailedPrecondition(f"model {name} version {version} was rejected")
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE model_versions SET status = 'retired'"
            " WHERE model_name = %s AND status = 'promoted'",
            (name,),
        )
        cur.execute(
            "UPDATE model_versions SET status = 'promoted', promoted_at = now()"
            " WHERE model_name = %s AND version = %s",
            (name, version),
        )
    return get_version(conn, name, version)


def reject(conn: Connection, name: str, version: int) -> ModelVersion:
    """Mark a candidate rejected; ``FailedPrecondition`` unless it is a candidate."""
    _lock_model(conn, name)
    row = get_version(conn, name, version, lock=True)
    if row.status == "rejected":
        return row
    if row.status != "candidate":
        raise FailedPrecondition(f"model {name} version {version} is {row.status}, not candidate")
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE model_versions SET status = 'rejected' WHERE model_name = %s AND version = %s",
            (name, version),
        )
    return get_version(conn, name, version)


def active_version(conn: Connection, name: str) -> ModelVersion | None:
    """The promoted version of ``name``, if any."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM model_versions WHERE model_name = %s AND status = 'promoted'",
            (name,),
        )
        row = cur.fetchone()
    return _row(row) if row else None


def list_versions(conn: Connection, name: str) -> list[ModelVersion]:
    """All versions of ``name``, newest first."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM model_versions WHERE model_name = %s ORDER BY version DESC",
            (name,),
        )
        return [_row(row) for row in cur.fetchall()]


def rollback(conn: Connection, name: str) -> ModelVersion:
    """Promote the newest previously promoted version below the promoted one.

    Raises ``FailedPrecondition`` when nothing is promoted or there is nothing to go back to.
    """
    _lock_model(conn, name)
    current = active_version(conn, name)
    if current is None:
        raise FailedPrecondition(f"model {name} has no promoted version to roll back from")
    with conn.cursor() as cur:
        cur.execute(
            "SELECT version FROM model_versions WHERE model_name = %s AND status = 'retired'"
            " AND promoted_at IS NOT NULL AND version < %s ORDER BY version DESC LIMIT 1",
            (name, current.version),
        )
        row = cur.fetchone()
    if row is None:
        raise FailedPrecondition(
            f"model {name} has no earlier promoted version before {current.version}"
        )
    return promote(conn, name, int(row[0]))
