"""PostgreSQL storage of user profiles."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg2.extras import execute_values

from services.common.db import Connection, Database
from services.profiles.service import Attributes, StoredProfile

__all__ = ["ProfileStore"]


class ProfileStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert(self, users: Sequence[tuple[str, Attributes]]) -> None:
        rows = [
            (
                user_id,
                a.age_band,
                a.gender,
                a.region,
                list(a.segments),
                a.consent_personalization,
                a.consent_analytics,
            )
            for user_id, a in users
        ]

        def write(conn: Connection) -> None:
            with conn.cursor() as cur:
                execute_values(
                    cur,
                    """
                    INSERT INTO users (user_id, age_band, gender, region, segments,
                                       consent_personalization, consent_analytics)
                    VALUES %s
                    ON CONFLICT (user_id) DO UPDATE SET
                        age_band = EXCLUDED.age_band, gender = EXCLUDED.gender,
                        region = EXCLUDED.region, segments = EXCLUDED.segments,
                        consent_personalization = EXCLUDED.consent_personalization,
                        consent_analytics = EXCLUDED.consent_analytics,
                        updated_at = now()
                    """,
                    rows,
                    template="(%s, %s, %s, %s, %s::text[], %s, %s)",
                )

        await self._db.run(write)

    async def get_many(self, user_ids: Sequence[str]) -> dict[str, StoredProfile]:
        def read(conn: Connection) -> dict[str, StoredProfile]:
            with conn.cursor() as cur:
                cur.execute(
                    """
                    SELECT user_id, age_band, gender, region, segments,
                           consent_personalization, consent_analytics, updated_at
                    FROM users WHERE user_id = ANY(%s)
                    """,
                    (list(user_ids),),
                )
                return {
                    row[0]: StoredProfile(
                        user_id=row[0],
                        attributes=Attributes(
                            age_band=row[1],
                            gender=row[2],
                            region=row[3],
                            segments=tuple(row[4]),
                            consent_personalization=row[5],
                            consent_analytics=row[6],
                        ),
                        updated_at=row[7],
                    )
                    for row in cur.fetchall()
                }

        return await self._db.run(read)

    async def delete(self, user_id: str) -> tuple[bool, int]:
        """Deletes the user and their events; returns (existed, events deleted)."""

        def remove(conn: Connection) -> tuple[bool, int]:
            with conn.cursor() as cur:
                cur.execute("DELETE FROM events WHERE user_id = %s", (user_id,))
                deleted_events = cur.rowcount
                cur.execute("DELETE FROM users WHERE user_id = %s", (user_id,))
                return cur.rowcount > 0 or deleted_events > 0, deleted_events

        return await self._db.run(remove)
