import uuid
from collections.abc import Iterator

import psycopg2
import pytest

from magpie.runtime import schema
from tests.support import ADMIN_URL

pytestmark = pytest.mark.integration

EXPECTED_TABLES = {"users", "products", "events", "model_versions", "consumer_checkpoints"}


@pytest.fixture
def empty_database() -> Iterator[str]:
    with schema.throwaway_database(ADMIN_URL, "magpie_migrate", migrate=False) as url:
        yield url


def _tables(url: str) -> set[str]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def test_upgrade_from_empty_then_rerun_is_harmless(empty_database: str) -> None:
    assert schema.current_revision(empty_database) is None

    schema.upgrade(empty_database)
    head = schema.current_revision(empty_database)
    tables = _tables(empty_database)
    schema.upgrade(empty_database)

    assert head is not None
    assert tables >= EXPECTED_TABLES
    assert schema.current_revision(empty_database) == head
    assert _tables(empty_database) == tables


def test_downgrade_to_base_and_up_again(empty_database: str) -> None:
    schema.upgrade(empty_database)
    schema.command.downgrade(schema._alembic_config(empty_database), "base")

    assert _tables(empty_database) == {"alembic_version"}

    schema.upgrade(empty_database)
    assert _tables(empty_database) >= EXPECTED_TABLES


def test_ensure_database_creates_once() -> None:
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/magpie_create_{uuid.uuid4().hex[:8]}"
    try:
        assert schema.ensure_database(url) is True
        assert schema.ensure_database(url) is False
    finally:
        schema.drop_database(url)
