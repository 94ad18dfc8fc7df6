"""Advancing a run by one stage: what the Celery task ``advance`` does, and a person's
``magpie retrain run-stage``.

One call claims the lease on the run's current stage, runs the stage while a thread keeps
the lease alive, and records the outcome in one conditional update. What comes next is
returned, not done: the caller (the Celery task) sends the next ``advance`` after the
commit, so a lost message leaves a run that the sweeper finds (:func:`runs.resumable_runs`)
rather than a stage applied twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import psycopg2
import redis

from magpie.modelstore.lifecycle import connection
from magpie.retraining import runs, stages
from magpie.retraining.runs import Run
from magpie.runtime.errors import Unavailable
from magpie.runtime.settings import Settings

__all__ = ["TRANSIENT_ERRORS", "Advance", "execute", "new_holder"]

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    Unavailable,
    redis.ConnectionError,
    ConnectionError,
    TimeoutError,
)
"""Failures of a dependency rather than of the stage: retried with backoff."""


def new_holder() -> str:
    """A lease holder name: host, process and a fresh suffix (one per attempt)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class Advance:
    """What the caller does next."""

    action: Literal["next", "later", "retry", "done", "busy"]
    """next: send ``advance`` now; later: send it after ``delay``; retry: the stage hit a
    transient error, send it again with backoff; done: the run ended; busy: another live
    worker holds the stage (a duplicate delivery), nothing to do."""
    run: Run | None = None
    delay: float = 0.0
    error: str = ""


class _Lease:
    """Keeps ``holder``'s lease alive from a thread while the stage works."""

    def __init__(self, settings: Settings, run_id: str, holder: str) -> None:
        self._settings = settings
        self._run_id = run_id
        self._holder = holder
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._beat, name="retrain-lease", daemon=True)

    def _beat(self) -> None:
        interval = self._settings.retrain_lease_seconds / 3.0
        while not self._stop.wait(interval):
            try:
                with connection(self._settings) as conn:
                    kept = runs.heartbeat(
                        conn, self._run_id, self._holder, self._settings.retrain_lease_seconds
                    )
            except psycopg2.Error as error:
                logger.warning("lease heartbeat failed (retrying): %s", error)
                continue
            if not kept:
                logger.error("run %s: lease lost by %s", self._run_id, self._holder)
                self.lost = True
                return

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _report(settings: Settings, run_id: str) -> Any:
    def report(progress: Mapping[str, Any]) -> None:
        try:
            with connection(settings) as conn:
                runs.update_progress(conn, run_id, progress)
        except psycopg2.Error as error:
            logger.warning("run %s: progress not recorded: %s", run_id, error)

    return report


def execute(settings: Settings, run_id: str, holder: str) -> Advance:
    """Runs the current stage of ``run_id`` once, under ``holder``'s lease."""
    with connection(settings) as conn:
        run = runs.claim(conn, run_id, holder, settings.retrain_lease_seconds)
        if run is None:
            current = runs.get_run(conn, run_id)
            return Advance("done" if current.status != "running" else "busy", current)
        tried = runs.attempts(conn, run_id, run.stage)
        if tried >= settings.retrain_stage_attempts:
            failed = runs.finish(
                conn,
                run_id,
                "failed",
                {"error": f"stage {run.stage} failed {tried} times; see its attempts"},
                holder,
            )
            return Advance("done", failed)
        runs.record_attempt(conn, run_id, run.stage, holder)
    stage = run.stage
    logger.info("run %s: stage %s (attempt %d) by %s", run_id, stage, tried + 1, holder)
    context = stages.StageContext(settings, run, _report(settings, run_id))
    try:
        with _Lease(settings, run_id, holder) as lease:
            fields = stages.STAGE_FUNCTIONS[stage](context)
        if lease.lost:
            raise Unavailable("the lease was lost while the stage ran")
    except stages.Pending as pending:
        with connection(settings) as conn:
            runs.record_attempt(conn, run_id, stage, holder, "retry", {"pending": str(pending)})
            runs.release(conn, run_id, holder)
        return Advance("later", run, delay=pending.seconds)
    except stages.Rejected as rejected:
        with connection(settings) as conn:
            runs.record_attempt(conn, run_id, stage, holder, "done", {"rejected": True})
            ended = runs.finish(conn, run_id, "rejected", {"verdict": rejected.verdict}, holder)
        logger.info("run %s rejected: %s", run_id, rejected)
        return Advance("done", ended)
    except TRANSIENT_ERRORS as error:
        with connection(settings) as conn:
            runs.record_attempt(conn, run_id, stage, holder, "retry", {"error": str(error)})
            runs.release(conn, run_id, holder)
        logger.warning("run %s: stage %s hit a transient error: %s", run_id, stage, error)
        return Advance("retry", run, error=str(error))
    except Exception as error:
        logger.exception("run %s: stage %s failed", run_id, stage)
        with connection(settings) as conn:
            runs.record_attempt(conn, run_id, stage, holder, "failed", {"error": repr(error)})
            ended = runs.finish(
                conn,
                run_id,
                "failed",
                {"error": f"{stage}: {type(error).__name__}: {error}"},
                holder,
            )
        stages.fail_version(settings, run)
        return Advance("done", ended)
    with connection(settings) as conn:
        moved = runs.complete_stage(conn, run_id, holder, stage, fields)
        if moved is None:  # lost the lease at the last moment: whoever has it goes on
            return Advance("busy", runs.get_run(conn, run_id))
        runs.record_attempt(conn, run_id, stage, holder, "done")
    logger.info("run %s: stage %s done", run_id, stage)
    return Advance("done" if moved.status != "running" else "next", moved)
