"""Database creation and schema migrations (Alembic), behind `magpie db upgrade`."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg2
import psycopg2.extensions
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool

__all__ = ["current_revision", "ensure_database", "upgrade"]

logger = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", _sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def _sqlalchemy_url(database_url: str) -> str:
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


def upgrade(database_url: str, revision: str = "head") -> None:
    """Applies migrations up to `revision`; a no-op when already there."""
    command.upgrade(_alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    engine = create_engine(_sqlalchemy_url(database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
