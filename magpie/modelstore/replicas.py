"""Which model versions each serving replica has loaded (``serving_replicas``).

Retrieval and ranking replicas report after every registry poll; a rollout waits until
every *live* replica (one that reported within ``fresh_seconds``) holds the version it is
about to promote, so the switch never lands on a replica that would have to load first.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from magpie.runtime.db import Connection

__all__ = ["SERVING_SERVICES", "Readiness", "readiness", "replica_id", "report_loaded"]

SERVING_SERVICES = ("retrieval", "ranking")
"""The services that load model versions."""


def replica_id() -> str:
    """This process among the replicas: host name (the pod's, in Kubernetes) and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def report_loaded(
    conn: Connection, service: str, replica: str, model_name: str, versions: Sequence[int]
) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO serving_replicas (service, replica, model_name, versions, seen_at)"
            " VALUES (%s, %s, %s, %s, now()) ON CONFLICT (service, replica, model_name)"
            " DO UPDATE SET versions = EXCLUDED.versions, seen_at = EXCLUDED.seen_at",
            (service, replica, model_name, list(versions)),
        )


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: list[str]
    """Live replicas ("service/replica") holding the version."""
    waiting: list[str]
    """Live replicas that do not hold it yet."""

    @property
    def complete(self) -> bool:
        return not self.waiting


def readiness(
    conn: Connection,
    model_name: str,
    version: int,
    services: Collection[str] = SERVING_SERVICES,
    fresh_seconds: float = 15.0,
) -> Readiness:
    """Which live replicas of ``services`` hold ``version``; stale rows are removed."""
    with conn.cursor() as cur:
        cur.execute(
            "DELETE FROM serving_replicas WHERE seen_at < now() - make_interval(secs => %s * 20)",
            (fresh_seconds,),
        )
        cur.execute(
            "SELECT service, replica, %s = ANY(versions) FROM serving_replicas"
            " WHERE model_name = %s AND service = ANY(%s)"
            " AND seen_at >= now() - make_interval(secs => %s)",
            (version, model_name, list(services), fresh_seconds),
        )
        rows = cur.fetchall()
    ready = sorted(f"{s}/{r}" for s, r, holds in rows if holds)
    waiting = sorted(f"{s}/{r}" for s, r, holds in rows if not holds)
    return Readiness(ready, waiting)
