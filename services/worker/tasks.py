"""The Celery surface of retraining: message in, one call into magpie.retraining, next
message out. No logic lives here.

``trigger`` starts a run (single flight in PostgreSQL) and sends ``advance``; ``advance``
runs one stage under its lease and sends itself for the next stage after the stage's
commit; ``sweep`` (beat) sends ``advance`` again for runs whose message or worker was lost.
Every task is acknowledged late and rejected back to the queue if its worker process dies
(``task_acks_late``, ``task_reject_on_worker_lost``); running a stage twice is harmless
because the lease and the conditional stage update decide who applies it.
"""

from __future__ import annotations

import logging
from typing import Any, cast, get_args

from celery import Celery, Task
from opentelemetry import propagate, trace

from magpie.modelstore.lifecycle import connection
from magpie.retraining import runs
from magpie.retraining.pipeline import TRANSIENT_ERRORS, execute, new_holder
from magpie.retraining.triggers import (
    ADVANCE_TASK,
    QUEUE,
    SWEEP_TASK,
    TRIGGER_TASK,
    events_since_last_run,
)
from magpie.runtime.logs import log_context
from magpie.runtime.settings import Settings
from magpie.runtime.telemetry import ATTR
from services.worker import config

__all__ = ["register_tasks"]

logger = logging.getLogger(__name__)


_tracer = trace.get_tracer(__name__)


def _links(context: dict[str, Any] | None) -> list[trace.Link]:
    """A link to the call that asked for the run (the feedback batch that crossed the
    threshold sends its ``traceparent``): the run's trace points at its cause."""
    carried = propagate.extract(context or {})
    span_context = trace.get_current_span(carried).get_span_context()
    return [trace.Link(span_context)] if span_context.is_valid else []


def _backoff(retries: int) -> float:
    return float(min(config.RETRY_BACKOFF_SECONDS * 2**retries, config.RETRY_BACKOFF_MAX_SECONDS))


def register_tasks(app: Celery, settings: Settings) -> None:
    """Defines the retraining tasks on ``app`` for ``settings``' model and database."""

    @app.task(
        name=TRIGGER_TASK,
        bind=True,
        autoretry_for=TRANSIENT_ERRORS,
        retry_backoff=config.RETRY_BACKOFF_SECONDS,
        retry_backoff_max=config.RETRY_BACKOFF_MAX_SECONDS,
        max_retries=config.MAX_TRANSIENT_RETRIES,
    )
    def trigger(
        self: Task,
        trigger: str,
        context: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> str | None:
        if trigger not in get_args(runs.Trigger):
            raise ValueError(f"unknown trigger {trigger!r}")
        threshold = settings.retrain_event_threshold
        if trigger == "threshold" and threshold:
            with connection(settings) as conn:
                count = events_since_last_run(conn, settings.model_name)
            if count < threshold:  # a run since took a snapshot: the trigger is stale
                logger.info("threshold trigger ignored: %d new events < %d", count, threshold)
                return None
        with (
            _tracer.start_as_current_span("retrain start", links=_links(context)) as span,
            connection(settings) as conn,
        ):
            run, created = runs.start_run(
                conn, settings.model_name, cast(runs.Trigger, trigger), context, params
            )
            span.set_attributes({ATTR.RUN_ID: run.run_id, "magpie.retrain.trigger": trigger})
        with log_context(run_id=run.run_id):
            if created:
                logger.info("run started by %s", trigger)
                advance.apply_async((run.run_id,), queue=QUEUE)
            else:
                logger.info("%s trigger joined the running run", trigger)
        return run.run_id

    @app.task(name=ADVANCE_TASK, bind=True)
    def advance(self: Task, run_id: str) -> dict[str, Any]:
        with log_context(run_id=run_id):
            trace.get_current_span().set_attribute(ATTR.RUN_ID, run_id)
            self.update_state(state="STARTED", meta={"run_id": run_id})
            with connection(settings) as conn:  # `magpie retrain status` shows its state
                runs.update_progress(conn, run_id, {"task_id": self.request.id})
            outcome = execute(settings, run_id, new_holder())
            run = outcome.run
            summary = {
                "run_id": run_id,
                "action": outcome.action,
                "stage": run.stage if run else None,
                "status": run.status if run else None,
            }
            if outcome.action == "next":
                advance.apply_async((run_id,), queue=QUEUE)
            elif outcome.action == "later":
                advance.apply_async((run_id,), queue=QUEUE, countdown=outcome.delay)
            elif outcome.action == "retry":
                retries = self.request.retries
                if retries >= config.MAX_TRANSIENT_RETRIES:
                    logger.error("giving up for now (the sweeper resumes it): %s", outcome.error)
                    return summary
                raise self.retry(countdown=_backoff(retries), max_retries=None)
            return summary

    @app.task(name=SWEEP_TASK)
    def sweep() -> list[str]:
        with connection(settings) as conn:
            lost = runs.resumable_runs(conn, idle_seconds=settings.retrain_lease_seconds)
        for run_id in lost:
            with log_context(run_id=run_id):
                logger.warning("resuming a run whose task or worker was lost")
            advance.apply_async((run_id,), queue=QUEUE)
        return lost
