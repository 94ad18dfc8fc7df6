"""PostgreSQL storage of events: COPY into a session staging table, then one idempotent insert.

Per batch the rows travel as one COPY text stream into a temporary table and
move into `events` with a single `INSERT ... SELECT ... ON CONFLICT (event_id)
DO NOTHING RETURNING event_id`, which also tells new events from duplicates.
The transaction commits (synchronous_commit on) before the caller learns the
outcome, so an acknowledged event is durable.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence

from magpie.runtime.db import Connection, Database
from services.feedback.service import EventRow

__all__ = ["EventStore", "copy_text"]

_STAGING = """
    CREATE TEMP TABLE IF NOT EXISTS feedback_events_in (
        event_id text, user_id text, product_id text, event_type smallint,
        occurred_us bigint, rating real, recommendation_id text, model_version text,
        position integer, session_id text, device smallint
    ) ON COMMIT DELETE ROWS
"""
_COPY = "COPY feedback_events_in FROM STDIN"
_MOVE = """
    INSERT INTO events (event_id, user_id, product_id, event_type, occurred_at, rating,
                        recommendation_id, model_version, position, session_id, device)
    SELECT event_id, user_id, product_id, event_type,
           TIMESTAMPTZ 'epoch' + occurred_us * INTERVAL '1 microsecond', rating,
           recommendation_id, model_version, position, session_id, device
    FROM feedback_events_in
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
"""


def copy_text(rows: Sequence[EventRow]) -> bytes:
    """Rows in PostgreSQL's COPY text format.

    Text fields are printable (checked before), so tab, newline and carriage
    return cannot occur; a backslash is the only character to escape, and
    doubling it in the joined text escapes it in every field at once.
    """
    text = "\n".join(["\t".join(map(str, row)) for row in rows])
    return (text.replace("\\", "\\\\") + "\n").encode()


class EventStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def existing_products(self, product_ids: Collection[str]) -> set[str]:
        def read(conn: Connection) -> set[str]:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT product_id FROM products WHERE product_id = ANY(%s)",
                    (list(product_ids),),
                )
                return {row[0] for row in cur.fetchall()}

        return await self._db.run(read)

    async def insert(self, rows: Sequence[EventRow]) -> set[str]:
        data = copy_text(rows)

        def write(conn: Connection) -> set[str]:
            with conn.cursor() as cur:
                cur.execute(_STAGING)
                cur.copy_expert(_COPY, io.BytesIO(data))
                cur.execute(_MOVE)
                return {row[0] for row in cur.fetchall()}

        return await self._db.run(write)
