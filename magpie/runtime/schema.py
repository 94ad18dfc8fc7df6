"""Database creation and schema migrations (Alembic), behind `magpie db upgrade`."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import psycopg2.extensions
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool

__all__ = [
    "current_revision",
    "drop_database",
    "ensure_database",
    "execute_autocommit",
    "sqlalchemy_url",
    "throwaway_database",
    "upgrade",
]

logger = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def sqlalchemy_url(database_url: str) -> str:
    """The SQLAlchemy URL (psycopg2 driver) of a libpq URL or keyword string."""
    scheme, sep, rest = database_url.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg2://{rest}"
    return database_url if sep else f"postgresql+psycopg2:///?{database_url}"


def ensure_database(database_url: str) -> bool:
    """Creates the URL's database when missing (through the `postgres` database).

    Returns True when it was created.
    """
    params = psycopg2.extensions.parse_dsn(database_url)
    name = params.get("dbname", "")
    try:
        psycopg2.connect(database_url, connect_timeout=5).close()
        return False
    except psycopg2.OperationalError as error:
        if f'"{name}" does not exist' not in str(error):
            raise
    admin = psycopg2.connect(**{**params, "dbname": "postgres"}, connect_timeout=5)
    try:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {psycopg2.extensions.quote_ident(name, cur)}")
    except psycopg2.errors.DuplicateDatabase:
        return False
    finally:
        admin.close()
    logger.info("created database %s", name)
    return True


def execute_autocommit(url: str, sql: str) -> None:
    """Runs one statement outside a transaction (CREATE/DROP DATABASE, VACUUM)."""
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def drop_database(database_url: str) -> None:
    """Drops the URL's database (through `postgres`), closing its connections first."""
    params = psycopg2.extensions.parse_dsn(database_url)
    admin = psycopg2.extensions.make_dsn(**{**params, "dbname": "postgres"})
    execute_autocommit(admin, f"DROP DATABASE IF EXISTS {params['dbname']} WITH (FORCE)")


@contextlib.contextmanager
def throwaway_database(admin_url: str, prefix: str, *, migrate: bool = True) -> Iterator[str]:
    """A new uniquely named database on `admin_url`'s server, migrated to head unless
    `migrate` is false, dropped on exit (tests and benchmarks)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    execute_autocommit(admin_url, f"CREATE DATABASE {name}")
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        drop_database(url)


def upgrade(database_url: str, revision: str = "head") -> None:
    """Applies migrations up to `revision`; a no-op when already there."""
    command.upgrade(_alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    engine = create_engine(sqlalchemy_url(database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
