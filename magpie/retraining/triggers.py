"""Starting retraining from anywhere: the task names the worker serves, a producer that
sends them, and the event-threshold check. Importable without torch (the feedback service
and the CLI send triggers; only the worker trains).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from celery import Celery

from magpie.runtime.db import Connection
from magpie.runtime.settings import Settings

__all__ = [
    "ADVANCE_TASK",
    "QUEUE",
    "SWEEP_TASK",
    "TRIGGER_TASK",
    "events_since_last_run",
    "producer",
    "send_trigger",
]

logger = logging.getLogger(__name__)

QUEUE = "magpie-retrain"
TRIGGER_TASK = "magpie.retrain.trigger"
"""(trigger, context, params) -> run_id: starts a run unless one is running (single flight)."""
ADVANCE_TASK = "magpie.retrain.advance"
"""(run_id) -> outcome: runs the run's current stage and sends itself for the next."""
SWEEP_TASK = "magpie.retrain.sweep"
"""() -> run ids: sends ``advance`` again for runs whose task or worker was lost."""


def producer(settings: Settings) -> Celery:
    """A Celery app that only sends tasks to the retraining worker's broker."""
    app = Celery("magpie-producer", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        broker_connection_timeout=2.0,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"max_retries": 2},
    )
    return app


def send_trigger(
    app: Celery,
    trigger: str,
    context: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
) -> str:
    """Asks the worker to start a run; returns the task id (the run id comes from the task)."""
    result = app.send_task(
        TRIGGER_TASK,
        kwargs={"trigger": trigger, "context": dict(context or {}), "params": dict(params or {})},
        queue=QUEUE,
    )
    return str(result.id)


def events_since_last_run(conn: Connection, model_name: str) -> int:
    """Events stored after the snapshot of the newest run that took one (a running run's
    included, so a run in progress resets the count)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT coalesce(max((snapshot->>'through_seq')::bigint), 0) FROM retrain_runs"
            " WHERE model_name = %s AND snapshot ? 'through_seq'",
            (model_name,),
        )
        row = cur.fetchone()
        since = int(row[0]) if row else 0
        cur.execute("SELECT count(*) FROM events WHERE seq > %s", (since,))
        counted = cur.fetchone()
    return int(counted[0]) if counted else 0
