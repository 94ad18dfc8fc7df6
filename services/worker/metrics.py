"""The retraining worker's metrics, read from PostgreSQL and the broker when scraped (the
stages run in prefork children, whose own counters the main process never sees)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from celery import Celery

from magpie.modelstore.lifecycle import connection
from magpie.retraining.triggers import QUEUE
from magpie.runtime.metrics import FunctionCollector
from magpie.runtime.settings import Settings

__all__ = ["retraining_collector"]

logger = logging.getLogger(__name__)

Family = tuple[str, str, dict[tuple[str, ...], float], list[str]]


def _queue_length(app: Celery) -> float:
    """Messages waiting in the retraining queue (Redis list or RabbitMQ queue). Declared as
    Celery declares it (durable, not auto-deleted): a passive declare fails on Redis until
    a consumer bound the queue."""
    with app.connection_for_read() as conn:
        declared = conn.default_channel.queue_declare(queue=QUEUE, durable=True, auto_delete=False)
        return float(declared.message_count)


def _from_database(settings: Settings) -> Iterator[Family]:
    with connection(settings) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT status, count(*) FROM retrain_runs WHERE model_name = %s GROUP BY status",
            (settings.model_name,),
        )
        yield (
            "magpie_retrain_runs",
            "Retraining runs by status",
            {(status,): float(count) for status, count in cur.fetchall()},
            ["status"],
        )
        cur.execute(
            "SELECT extract(epoch FROM max(finished_at)) FROM retrain_runs"
            " WHERE model_name = %s AND status = 'succeeded'",
            (settings.model_name,),
        )
        (last,) = cur.fetchone()  # type: ignore[misc]
        yield (
            "magpie_retrain_last_success_timestamp_seconds",
            "When the newest successful run finished (Unix time; 0: never)",
            {(): float(last or 0.0)},
            [],
        )
        cur.execute(
            "SELECT a.stage, sum(extract(epoch FROM a.finished_at - a.started_at)), count(*)"
            " FROM retrain_stage_attempts a JOIN retrain_runs r USING (run_id)"
            " WHERE r.model_name = %s AND a.outcome = 'done' GROUP BY a.stage",
            (settings.model_name,),
        )
        rows = cur.fetchall()
        yield (
            "magpie_retrain_stage_seconds_sum",
            "Seconds spent in completed stages, by stage",
            {(stage,): float(total) for stage, total, _ in rows},
            ["stage"],
        )
        yield (
            "magpie_retrain_stage_completions",
            "Completed stages, by stage",
            {(stage,): float(count) for stage, _, count in rows},
            ["stage"],
        )
        cur.execute(
            "SELECT coalesce((verdict->>'accepted')::boolean, false), count(*) FROM retrain_runs"
            " WHERE model_name = %s AND verdict IS NOT NULL GROUP BY 1",
            (settings.model_name,),
        )
        yield (
            "magpie_gate_verdicts",
            "Gate verdicts by outcome",
            {("accepted" if ok else "rejected",): float(n) for ok, n in cur.fetchall()},
            ["verdict"],
        )


def retraining_collector(settings: Settings, app: Celery) -> FunctionCollector:
    def read() -> Iterator[Family]:
        started = time.perf_counter()
        yield from _from_database(settings)
        families: dict[tuple[str, ...], float] = {}
        try:
            families[()] = _queue_length(app)
        except Exception as error:  # noqa: BLE001 - a broker outage leaves the gauge out
            logger.warning("queue length unavailable: %s", error)
        if families:
            yield ("magpie_retrain_queue_messages", "Tasks waiting in the queue", families, [])
        took: dict[tuple[str, ...], Any] = {(): time.perf_counter() - started}
        yield ("magpie_retrain_metrics_scrape_seconds", "Time to read these metrics", took, [])

    return FunctionCollector(read)
