"""A feedback process killed with SIGKILL mid-stream has lost no acknowledged event, and a
producer that sends again what was not acknowledged ends with every event stored once."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from magpie.runtime.settings import Settings
from tests.support import service_process
from tools.bench._feedback_stream import ResumingStream, stored_counts

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCHES = 60
BATCH_SIZE = 500
KILL_AFTER_ACKS = 8
NO_RETRAINING = {"MAGPIE_RETRAIN_EVENT_THRESHOLD": "0"}
"""The stream crosses the default threshold: no trigger for another test's broker."""


def test_sigkill_mid_stream_keeps_every_acknowledged_event(
    settings: Settings, catalog: dict[str, str], clean_db: str, tmp_path: Path
) -> None:
    stream = ResumingStream(BATCHES, BATCH_SIZE)
    with service_process("feedback", settings, tmp_path, NO_RETRAINING) as service:

        def kill(acks: int) -> None:
            if acks == KILL_AFTER_ACKS:
                service.process.kill()

        error = stream.send(service.address, on_ack=kill)
        service.process.wait()

    assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE
    assert KILL_AFTER_ACKS <= len(stream.acked) < BATCHES
    stored = stored_counts(clean_db)
    missing = [e for s in stream.acked for e in stream.event_ids(s) if e not in stored]
    assert missing == []
    # Only whole batches are stored: each batch commits as one transaction.
    assert len(stored) % BATCH_SIZE == 0

    with service_process("feedback", settings, tmp_path, NO_RETRAINING) as service:
        assert stream.send(service.address) is None
    assert sorted(stream.acked) == list(range(BATCHES))
    stored = stored_counts(clean_db)
    assert set(stored) == {e for s in range(BATCHES) for e in stream.event_ids(s)}
    assert set(stored.values()) == {1}
    assert stream.accepted == BATCHES * BATCH_SIZE - stream.duplicates
