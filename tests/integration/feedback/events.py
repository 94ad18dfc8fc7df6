"""Builders of feedback events and queries over what was stored (shared by the feedback tests)."""

from __future__ import annotations

import psycopg2

from magpie.v1 import common_pb2, feedback_pb2


def event(event_id: str, **fields: object) -> feedback_pb2.Event:
    values: dict[str, object] = {
        "user_id": "u1",
        "product_id": "p1",
        "event_type": common_pb2.EVENT_TYPE_CLICK,
        **fields,
    }
    return feedback_pb2.Event(event_id=event_id, **values)  # type: ignore[arg-type]


def clicks(prefix: str, n: int, **fields: object) -> list[feedback_pb2.Event]:
    return [event(f"{prefix}-{i}", **fields) for i in range(n)]


def query(database_url: str, sql: str, params: object = None) -> list[tuple[object, ...]]:
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def stored_ids(database_url: str) -> list[str]:
    return [str(row[0]) for row in query(database_url, "SELECT event_id FROM events ORDER BY 1")]
