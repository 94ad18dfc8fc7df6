"""A feedback process killed with SIGKILL mid-stream has lost no acknowledged event."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from magpie.runtime.settings import Settings
from magpie.v1 import feedback_pb2 as pb
from magpie.v1 import feedback_pb2_grpc
from tests.integration.feedback.events import clicks, stored_ids
from tests.support import service_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCHES = 200
BATCH_SIZE = 500
KILL_AFTER_ACKS = 8


def _batches() -> Iterator[pb.StreamEventsRequest]:
    for s in range(BATCHES):
        yield pb.StreamEventsRequest(sequence=s, events=clicks(f"k{s}", BATCH_SIZE))


def test_sigkill_mid_stream_keeps_every_acknowledged_event(
    settings: Settings, catalog: dict[str, str], clean_db: str, tmp_path: Path
) -> None:
    acked: list[int] = []
    with service_process("feedback", settings, tmp_path) as service:
        with grpc.insecure_channel(service.address) as channel:
            stub = feedback_pb2_grpc.FeedbackServiceStub(channel)
            with pytest.raises(grpc.RpcError) as raised:
                for ack in stub.StreamEvents(_batches(), timeout=60):
                    assert ack.result.accepted == BATCH_SIZE
                    acked.append(ack.sequence)
                    if len(acked) == KILL_AFTER_ACKS:
                        service.process.kill()
        service.process.wait()

    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert KILL_AFTER_ACKS <= len(acked) < BATCHES
    stored = set(stored_ids(clean_db))
    missing = [f"k{s}-{i}" for s in acked for i in range(BATCH_SIZE) if f"k{s}-{i}" not in stored]
    assert missing == []
    # Only whole batches are stored: each batch commits as one transaction.
    assert len(stored) % BATCH_SIZE == 0
