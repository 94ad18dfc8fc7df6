"""Wiring of the retraining worker: the Celery app from settings, its beat schedule."""

from __future__ import annotations

import tempfile
from pathlib import Path

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from magpie.retraining.triggers import QUEUE, SWEEP_TASK, TRIGGER_TASK
from magpie.runtime.settings import Settings
from magpie.runtime.telemetry import setup_tracing, shutdown_tracing
from services.worker import config
from services.worker.tasks import register_tasks

__all__ = ["NAME", "create_app", "instrument_celery"]

NAME = "worker"


def create_app(settings: Settings) -> Celery:
    """The worker's Celery app: Redis (or RabbitMQ) from ``MAGPIE_BROKER_URL``, tasks
    acknowledged late, one task prefetched, stage time limits from settings."""
    app = Celery("magpie", broker=settings.broker_url, backend=settings.result_backend)
    stage_limit = settings.retrain_stage_seconds
    schedule: dict[str, dict[str, object]] = {
        "sweep": {"task": SWEEP_TASK, "schedule": config.SWEEP_SECONDS},
    }
    if settings.retrain_schedule_seconds > 0:
        schedule["scheduled-run"] = {
            "task": TRIGGER_TASK,
            "schedule": settings.retrain_schedule_seconds,
            "kwargs": {"trigger": "schedule"},
        }
    app.conf.update(
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=True,
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=settings.retrain_tasks_per_child,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        task_time_limit=stage_limit,
        task_soft_time_limit=stage_limit * 0.95,
        # Redis redelivers an unacknowledged task after visibility_timeout: beyond the
        # longest stage, so a running training is never delivered twice.
        broker_transport_options={"visibility_timeout": int(stage_limit + 600)},
        broker_connection_retry_on_startup=True,
        result_extended=True,
        result_expires=7 * 86_400,
        beat_schedule=schedule,
        beat_schedule_filename=str(Path(tempfile.gettempdir()) / "magpie-beat-schedule"),
        timezone="UTC",
    )
    register_tasks(app, settings)
    _trace_children(settings)
    return app


def _trace_children(settings: Settings) -> None:
    """Tracing in each prefork child: set up after the fork (a batch span processor's
    thread does not survive it) and flushed before the child exits, which with
    ``worker_max_tasks_per_child`` happens after every few tasks (contrib #4916)."""

    @worker_process_init.connect(weak=False)
    def start(**_: object) -> None:
        if setup_tracing(NAME, settings):
            instrument_celery()

    @worker_process_shutdown.connect(weak=False)
    def stop(**_: object) -> None:
        shutdown_tracing()


def instrument_celery() -> None:
    """Spans for publishing and executing tasks (the contrib Celery instrumentation)."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    instrumentor = CeleryInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
