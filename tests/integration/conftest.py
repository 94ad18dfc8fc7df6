"""Fixtures shared by the integration tests: a fresh PostgreSQL database, Redis, settings
and real servers on free ports. Everything under this folder is marked `integration`, so
`pytest -m "not integration"` runs the unit tier with no server up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg2
import pytest
import redis

from magpie.runtime import schema
from magpie.runtime.server import RunningServer, ServiceSpec, start_server
from magpie.runtime.settings import Settings, load_settings
from tests.support import ADMIN_URL, TEST_REDIS_URL

_APP_TABLES_SQL = """
    SELECT string_agg(format('%I', tablename), ', ') FROM pg_tables
    WHERE schemaname = 'public' AND tablename <> 'alembic_version'
"""


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database created for this test session and migrated to head."""
    with schema.throwaway_database(ADMIN_URL, "magpie_test") as url:
        yield url


@pytest.fixture
def clean_db(database_url: str) -> str:
    """The session database with every application table emptied."""
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(_APP_TABLES_SQL)
            (tables,) = cur.fetchone()
            cur.execute(f"TRUNCATE {tables} RESTART IDENTITY")
    finally:
        conn.close()
    return database_url


@pytest.fixture
def redis_url() -> str:
    """A Redis database of its own, emptied."""
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    return TEST_REDIS_URL


@pytest.fixture
def settings(clean_db: str, redis_url: str) -> Settings:
    return load_settings(
        {
            "database_url": clean_db,
            "redis_url": redis_url,
            "port": 0,
            "grace_seconds": 5.0,
            "health_probe_seconds": 0.3,
            "db_retry_seconds": 1.0,
            "log_json": False,
        }
    )


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[ServiceSpec, Settings], object]]:
    """Starts real servers in this event loop: `running = await serve(spec, settings)`."""
    started: list[RunningServer] = []

    async def start(spec: ServiceSpec, settings: Settings) -> RunningServer:
        running = await start_server(spec, settings)
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        await running.stop(0)


_HERE = Path(__file__).parent


_BROWSER_TESTS = _HERE / "e2e" / "test_console.py"
"""Playwright's sync API runs an event loop of its own in the test process and marks it
as running between its calls; the async tests' grpc.aio state must not meet it. The
browser tests therefore run last (they get a fresh end-to-end platform of their own)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: item.path == _BROWSER_TESTS)  # stable: the rest keep order
