"""The model registry: versions, the aliases serving follows, and the promotion log.

A version's ``status`` is its lifecycle::

    training ──> candidate          (trained; written as a bundle; the gate may still judge it)
        │   └──> rejected           (the gate said no: ``verdict`` says why)
        └──────> failed             (its run failed before a bundle existed)

What is *served* is decided by aliases (``model_aliases``): ``champion`` is the version
serving traffic, ``previous`` the champion before it (kept loaded everywhere, so a
rollback is one alias change and takes seconds), ``staged`` a version being rolled out
(loaded beside the champion before the switch). Every change of ``champion`` appends a
row to ``model_promotions`` (from, to, when, what triggered it), which the database
refuses to update or delete.

Every function takes an open psycopg2 connection and runs inside the caller's
transaction: ``database.run_sync(lambda conn: promote(conn, "magpie", 3, "manual"))`` or
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
    "ALIASES",
    "Alias",
    "ModelVersion",
    "Promotion",
    "Status",
    "active_version",
    "aliases",
    "get_version",
    "history",
    "list_versions",
    "next_version",
    "promote",
    "register_candidate",
    "reject",
    "reserve_version",
    "rollback",
    "served_at",
    "set_staged",
    "set_status",
]

Status = Literal["training", "candidate", "rejected", "failed"]
Alias = Literal["champion", "previous", "staged"]
ALIASES: tuple[Alias, ...] = ("champion", "previous", "staged")
"""Every alias; serving replicas keep the versions of all three loaded."""


@dataclass(frozen=True, slots=True)
class ModelVersion:
    model_name: str
    version: int
    status: Status
    metrics: dict[str, Any]
    artifact_uri: str
    created_at: datetime.datetime
    verdict: dict[str, Any] | None = None
    run_id: str | None = None
    """The retraining run that produced it; None for a version registered by hand."""


@dataclass(frozen=True, slots=True)
class Promotion:
    """One change of the champion: ``from_version`` is None for the first."""

    model_name: str
    from_version: int | None
    to_version: int
    action: Literal["promote", "rollback"]
    trigger: str
    reason: str
    at: datetime.datetime
    run_id: str | None


_COLUMNS = "model_name, version, status, metrics, artifact_uri, created_at, verdict, run_id"


def _row(row: tuple[Any, ...]) -> ModelVersion:
    name, version, status, metrics, uri, created, verdict, run_id = row
    return ModelVersion(
        name,
        version,
        cast(Status, status),
        metrics,
        uri,
        created,
        verdict,
        None if run_id is None else str(run_id),
    )


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


def _insert(
    conn: Connection,
    name: str,
    version: int,
    status: Status,
    metrics: Mapping[str, Any],
    artifact_uri: str,
    run_id: str | None,
) -> ModelVersion:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO model_versions (model_name, version, status, metrics, artifact_uri,"
            " run_id) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (model_name, version) DO NOTHING",
            (name, version, status, json.dumps(dict(metrics)), artifact_uri, run_id),
        )
    row = get_version(conn, name, version)
    if row.artifact_uri != artifact_uri:
        raise AlreadyExists(f"model {name} version {version} exists ({row.artifact_uri})")
    return row


def register_candidate(
    conn: Connection, name: str, version: int, metrics: Mapping[str, Any], artifact_uri: str
) -> ModelVersion:
    """Record a new candidate version; repeating the same call returns the same row.

    Raises ``AlreadyExists`` if the version exists with another artifact.
    """
    return _insert(conn, name, version, "candidate", metrics, artifact_uri, None)


def reserve_version(conn: Connection, name: str, artifact_uri: str, run_id: str) -> ModelVersion:
    """The next version, recorded as ``training`` for ``run_id`` (its bundle will be at
    ``artifact_uri``); repeating the call for the same run returns the same row."""
    _lock_model(conn, name)
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM model_versions WHERE model_name = %s AND run_id = %s",
            (name, run_id),
        )
        existing = cur.fetchone()
    if existing is not None:
        return _row(existing)
    version = next_version(conn, name)
    uri = artifact_uri.format(version=version)
    return _insert(conn, name, version, "training", {}, uri, run_id)


def set_status(
    conn: Connection,
    name: str,
    version: int,
    status: Status,
    *,
    metrics: Mapping[str, Any] | None = None,
    verdict: Mapping[str, Any] | None = None,
) -> ModelVersion:
    """Moves a version along its lifecycle; ``metrics`` are merged into the stored ones."""
    row = get_version(conn, name, version, lock=True)
    if status != row.status and _aliased(conn, name, version):
        raise FailedPrecondition(f"model {name} version {version} is served; it stays a candidate")
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE model_versions SET status = %s, metrics = metrics || %s::jsonb,"
            " verdict = coalesce(%s::jsonb, verdict) WHERE model_name = %s AND version = %s",
            (
                status,
                json.dumps(dict(metrics or {})),
                None if verdict is None else json.dumps(dict(verdict)),
                name,
                version,
            ),
        )
    return get_version(conn, name, version)


def reject(
    conn: Connection, name: str, version: int, verdict: Mapping[str, Any] | None = None
) -> ModelVersion:
    """Mark a candidate rejected; ``FailedPrecondition`` if it is served (an alias names it)."""
    return set_status(conn, name, version, "rejected", verdict=verdict)


def _lock_model(conn: Connection, name: str) -> None:
    """Serialise lifecycle changes of one model (two promotions must not interleave)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"model_versions:{name}",))


def aliases(conn: Connection, name: str) -> dict[Alias, int]:
    """The versions the aliases of ``name`` point at (absent aliases are left out)."""
    with conn.cursor() as cur:
        cur.execute("SELECT alias, version FROM model_aliases WHERE model_name = %s", (name,))
        return {cast(Alias, alias): int(version) for alias, version in cur.fetchall()}


def _aliased(conn: Connection, name: str, version: int) -> bool:
    return version in aliases(conn, name).values()


def _set_alias(conn: Connection, name: str, alias: Alias, version: int | None) -> None:
    with conn.cursor() as cur:
        if version is None:
            cur.execute(
                "DELETE FROM model_aliases WHERE model_name = %s AND alias = %s", (name, alias)
            )
        else:
            cur.execute(
                "INSERT INTO model_aliases (model_name, alias, version) VALUES (%s, %s, %s)"
                " ON CONFLICT (model_name, alias) DO UPDATE"
                " SET version = EXCLUDED.version, updated_at = now()"
                " WHERE model_aliases.version <> EXCLUDED.version",
                (name, alias, version),
            )


def _servable(conn: Connection, name: str, version: int) -> ModelVersion:
    row = get_version(conn, name, version, lock=True)
    if row.status != "candidate":
        raise FailedPrecondition(f"model {name} version {version} is {row.status}")
    return row


def set_staged(conn: Connection, name: str, version: int | None) -> None:
    """Names the version being rolled out (None: none), so that serving replicas load it
    beside the champion before it is promoted."""
    _lock_model(conn, name)
    if version is not None:
        _servable(conn, name, version)
    _set_alias(conn, name, "staged", version)


def _log(
    conn: Connection,
    name: str,
    from_version: int | None,
    to_version: int,
    action: str,
    trigger: str,
    reason: str,
    run_id: str | None,
) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO model_promotions (model_name, from_version, to_version, action,"
            " trigger, reason, run_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (name, from_version, to_version, action, trigger, reason, run_id),
        )


def promote(
    conn: Connection,
    name: str,
    version: int,
    trigger: str,
    *,
    reason: str = "",
    run_id: str | None = None,
) -> ModelVersion:
    """Make ``version`` the champion in one transaction: the champion before it becomes
    ``previous``, ``staged`` is cleared if it named ``version``, and the change is logged.

    Promoting the champion again changes nothing. Raises ``NotFound`` for an unknown
    version and ``FailedPrecondition`` for one that is not a candidate.
    """
    _lock_model(conn, name)
    row = _servable(conn, name, version)
    current = aliases(conn, name)
    if current.get("champion") == version:
        return row
    if "champion" in current:
        _set_alias(conn, name, "previous", current["champion"])
    _set_alias(conn, name, "champion", version)
    if current.get("staged") == version:
        _set_alias(conn, name, "staged", None)
    _log(conn, name, current.get("champion"), version, "promote", trigger, reason, run_id)
    return row


def rollback(
    conn: Connection, name: str, trigger: str = "manual", reason: str = ""
) -> ModelVersion:
    """Swap ``champion`` and ``previous`` in one transaction, and log it.

    Both stay loaded in every serving replica, so this takes effect within a poll
    interval. Rolling back twice returns to where it started; going further back is a
    promotion of that version. Raises ``FailedPrecondition`` without a previous version.
    """
    _lock_model(conn, name)
    current = aliases(conn, name)
    if "champion" not in current or "previous" not in current:
        raise FailedPrecondition(f"model {name} has no previous version to roll back to")
    champion, previous = current["champion"], current["previous"]
    row = _servable(conn, name, previous)
    _set_alias(conn, name, "previous", champion)
    _set_alias(conn, name, "champion", previous)
    _log(conn, name, champion, previous, "rollback", trigger, reason, None)
    return row


def active_version(conn: Connection, name: str) -> ModelVersion | None:
    """The champion of ``name``, if any."""
    champion = aliases(conn, name).get("champion")
    return None if champion is None else get_version(conn, name, champion)


def list_versions(conn: Connection, name: str, limit: int | None = None) -> list[ModelVersion]:
    """The newest ``limit`` versions of ``name`` (all when None), newest first."""
    with conn.cursor() as cur:
        cur.execute(  # LIMIT NULL is no limit
            f"SELECT {_COLUMNS} FROM model_versions WHERE model_name = %s"
            " ORDER BY version DESC LIMIT %s",
            (name, limit),
        )
        return [_row(row) for row in cur.fetchall()]


_PROMOTION_COLUMNS = "model_name, from_version, to_version, action, trigger, reason, at, run_id"


def _promotion(row: tuple[Any, ...]) -> Promotion:
    name, source, target, action, trigger, reason, at, run_id = row
    return Promotion(
        name, source, target, action, trigger, reason, at, None if run_id is None else str(run_id)
    )


def history(conn: Connection, name: str, limit: int = 100) -> list[Promotion]:
    """The newest ``limit`` champion changes of ``name``, newest first."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_PROMOTION_COLUMNS} FROM model_promotions WHERE model_name = %s"
            " ORDER BY at DESC, id DESC LIMIT %s",
            (name, limit),
        )
        return [_promotion(row) for row in cur.fetchall()]


def served_at(conn: Connection, name: str, when: datetime.datetime) -> Promotion | None:
    """The promotion that made the version serving at ``when`` the champion (None before
    the first)."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_PROMOTION_COLUMNS} FROM model_promotions WHERE model_name = %s"
            " AND at <= %s ORDER BY at DESC, id DESC LIMIT 1",
            (name, when),
        )
        row = cur.fetchone()
    return None if row is None else _promotion(row)
