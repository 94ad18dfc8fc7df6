"""``python -m services.worker worker|beat``: the retraining worker, or its scheduler.

Exactly one beat is active: it holds a PostgreSQL advisory lock for its whole life, and a
second beat waits for that lock (a warm standby) instead of sending a second schedule.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time

import psycopg2
from prometheus_client import REGISTRY
from pydantic import ValidationError

from magpie.runtime.logs import configure_logging
from magpie.runtime.metrics import serve_metrics
from magpie.runtime.settings import load_settings
from magpie.runtime.telemetry import setup_tracing
from services.worker import config
from services.worker.app import NAME, create_app, instrument_celery
from services.worker.metrics import retraining_collector

logger = logging.getLogger(__name__)


def _hold_beat_lock(database_url: str) -> psycopg2.extensions.connection:
    """Blocks until this process holds the beat lock; the connection keeps it."""
    while True:
        try:
            conn = psycopg2.connect(database_url, connect_timeout=5)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (config.BEAT_LOCK,))
                (held,) = cur.fetchone()  # type: ignore[misc]
            if held:
                return conn
            conn.close()
            logger.info("another beat is active; waiting to take over")
        except psycopg2.OperationalError as error:
            logger.warning("database unavailable for the beat lock: %s", error)
        time.sleep(5.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.worker")
    parser.add_argument("role", choices=["worker", "beat"])
    parser.add_argument("--concurrency", type=int, default=1, help="worker processes")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ValidationError as error:
        print(f"invalid settings: {error}", file=sys.stderr)
        return 2
    configure_logging(f"{NAME}-{args.role}", settings.log_level, json_lines=settings.log_json)
    if args.role == "beat" and setup_tracing(f"{NAME}-{args.role}", settings):
        instrument_celery()  # beat publishes the schedule
    # The worker's main process only forks: its children set tracing up after the fork
    # (services.worker.app), and a parent holding gRPC threads (an OTLP exporter) would
    # fork children whose gRPC can hang.
    app = create_app(settings)
    level = settings.log_level.upper()
    if args.role == "beat":
        lock = _hold_beat_lock(settings.database_url)
        try:
            app.start(["beat", "--loglevel", level])
        finally:
            lock.close()
        return 0
    REGISTRY.register(retraining_collector(settings, app))
    serve_metrics(NAME, settings)
    app.worker_main(
        [
            "worker",
            "--loglevel",
            level,
            "--concurrency",
            str(args.concurrency),
            "--hostname",
            f"retrain@{socket.gethostname()}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
