"""The event-threshold trigger of retraining, in the feedback service.

The request path only counts what it stored (and keeps the trace context of the newest
call that stored events); a background task checks every few seconds, while events
arrive, whether the events since the last run's snapshot reached the threshold, and if
so asks the retraining worker for a run, with that call's trace context so the run links
to it. The check is level-triggered: a trigger lost with the broker is sent again at the
next check, and duplicates collapse into the one running run.
"""

from __future__ import annotations

import asyncio
import logging

from celery import Celery
from opentelemetry import propagate

from magpie.retraining.triggers import events_since_last_run, producer, send_trigger
from magpie.runtime.db import Database
from magpie.runtime.settings import Settings
from services.feedback import config

__all__ = ["RetrainTrigger"]

logger = logging.getLogger(__name__)


class RetrainTrigger:
    def __init__(self, settings: Settings, db: Database) -> None:
        self._settings = settings
        self._db = db
        self._unchecked = 0
        self._carrier: dict[str, str] = {}
        self._producer: Celery | None = None

    def stored(self, events: int) -> None:
        """Called by the service after each committed batch (cheap: no I/O)."""
        self._unchecked += events
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if carrier:
            self._carrier = carrier

    async def check(self) -> bool:
        """Sends a threshold trigger if the threshold is reached; True when it sent one."""
        threshold = self._settings.retrain_event_threshold
        if not threshold or not self._unchecked:
            return False
        self._unchecked = 0
        model = self._settings.model_name
        count = await self._db.run(lambda conn: events_since_last_run(conn, model))
        if count < threshold:
            return False
        if self._producer is None:
            self._producer = producer(self._settings)
        context = {"events": count, "threshold": threshold, **self._carrier}
        await asyncio.to_thread(send_trigger, self._producer, "threshold", context)
        logger.info("%d new events reached the retraining threshold %d", count, threshold)
        return True

    async def run(self) -> None:
        """Checks every RETRAIN_CHECK_SECONDS until cancelled; a failed check is retried."""
        while True:
            await asyncio.sleep(config.RETRAIN_CHECK_SECONDS)
            try:
                await self.check()
            except Exception as error:  # noqa: BLE001 - the next check tries again
                self._unchecked = max(self._unchecked, 1)
                logger.warning("retraining threshold check failed: %s", error)
