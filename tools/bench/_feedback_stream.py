"""A feedback producer that outlives the service dying under it, shared by the crash test
(tests/integration/feedback/test_crash.py) and its benchmark (tools.bench.feedback_crash).

Numbered batches of click events go over FeedbackService.StreamEvents; the producer keeps
which batches were acknowledged. When the stream breaks (the service was killed), the
next `ResumingStream.send` sends again every batch not acknowledged yet, as a producer
with at-least-once delivery does: a batch that was stored but not acknowledged comes back
as duplicates and is not stored twice. `stored_counts` says how often each event id is
stored, to check that every event ends up stored exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import grpc
import psycopg2

from magpie.v1 import common_pb2, feedback_pb2, feedback_pb2_grpc

__all__ = ["PRODUCT_ID", "ResumingStream", "stored_counts"]

PRODUCT_ID = "p1"
"""The product every event is about: it must be in the catalog (the products table)."""


class ResumingStream:
    """``batches`` batches of ``size`` click events, ids ``k<batch>-<index>``, sent until
    each one is acknowledged."""

    def __init__(self, batches: int, size: int) -> None:
        self.batches, self.size = batches, size
        self.acked: list[int] = []
        """Sequence numbers acknowledged, in the order the acks came."""
        self.accepted = 0
        self.duplicates = 0
        """Events the service said it already had: sent again after a break, stored before."""

    def event_ids(self, sequence: int) -> list[str]:
        return [f"k{sequence}-{i}" for i in range(self.size)]

    def _request(self, sequence: int) -> feedback_pb2.StreamEventsRequest:
        events = [
            feedback_pb2.Event(
                event_id=event_id,
                user_id="u1",
                product_id=PRODUCT_ID,
                event_type=common_pb2.EVENT_TYPE_CLICK,
            )
            for event_id in self.event_ids(sequence)
        ]
        return feedback_pb2.StreamEventsRequest(sequence=sequence, events=events)

    def _pending(self) -> Iterator[feedback_pb2.StreamEventsRequest]:
        acked = set(self.acked)
        return (self._request(s) for s in range(self.batches) if s not in acked)

    @property
    def done(self) -> bool:
        return len(set(self.acked)) == self.batches

    def send(
        self,
        address: str,
        on_ack: Callable[[int], None] | None = None,
        timeout: float = 120.0,
    ) -> grpc.RpcError | None:
        """One StreamEvents call with every batch not acknowledged yet; ``on_ack(n)`` runs
        after the n-th acknowledgement of this call. Returns the error that ended the call,
        or None when it ended with every batch acknowledged."""
        with grpc.insecure_channel(address) as channel:
            stub = feedback_pb2_grpc.FeedbackServiceStub(channel)
            try:
                for n, ack in enumerate(stub.StreamEvents(self._pending(), timeout=timeout), 1):
                    self.acked.append(ack.sequence)
                    self.accepted += ack.result.accepted
                    self.duplicates += ack.result.duplicates
                    if on_ack is not None:
                        on_ack(n)
            except grpc.RpcError as error:
                return error
        return None


def stored_counts(database_url: str) -> Counter[str]:
    """How many rows of ``events`` each event id has."""
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT event_id, count(*) FROM events GROUP BY event_id")
            return Counter({str(event_id): int(n) for event_id, n in cur.fetchall()})
    finally:
        conn.close()
