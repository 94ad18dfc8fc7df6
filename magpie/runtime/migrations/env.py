"""Alembic environment: runs migrations online against the URL set by `magpie.runtime.schema`."""

from alembic import context
from sqlalchemy import create_engine, pool

url = context.config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url must be set by magpie.runtime.schema.upgrade"
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        # Serialise concurrent upgrades (several services starting at once).
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7320001)")
        context.run_migrations()
