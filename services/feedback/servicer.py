"""gRPC surface of the feedback service: validation and protobuf <-> domain only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import grpc

from magpie.runtime.auth import current_caller
from magpie.runtime.units import MICROS_PER_SECOND
from magpie.runtime.validation import Validators, Violations
from magpie.v1 import feedback_pb2 as pb
from magpie.v1 import feedback_pb2_grpc
from services.feedback import config
from services.feedback.service import BatchResult, EventRow, FeedbackService

__all__ = ["VALIDATORS", "FeedbackServicer"]


def _validate_batch(request: pb.RecordEventsRequest | pb.StreamEventsRequest) -> None:
    """Only the batch's shape; a bad event is rejected on its own, not the whole request."""
    v = Violations()
    v.check_count(request.events, "events", least=1, most=config.MAX_BATCH)
    v.raise_if_any()


VALIDATORS: Validators = {
    pb.RecordEventsRequest: _validate_batch,
    pb.StreamEventsRequest: _validate_batch,
}


def _rows(events: Iterable[pb.Event]) -> list[EventRow]:
    rows: list[EventRow] = []
    append = rows.append
    for e in events:
        t = e.occurred_at
        append(
            (
                e.event_id,
                e.user_id,
                e.product_id,
                e.event_type,
                t.seconds * MICROS_PER_SECOND + t.nanos // 1000
                if e.HasField("occurred_at")
                else None,
                e.rating,
                e.recommendation_id,
                e.model_version,
                e.position,
                e.session_id,
                e.device,
                e.comment,
            )
        )
    return rows


def _response(result: BatchResult) -> pb.RecordEventsResponse:
    result_type = pb.EventResult
    return pb.RecordEventsResponse(
        results=[
            result_type(event_id=event_id, outcome=outcome, reason=reason)  # type: ignore[arg-type]
            for event_id, outcome, reason in result.results
        ],
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=result.rejected,
    )


class FeedbackServicer(feedback_pb2_grpc.FeedbackServiceServicer):
    def __init__(self, service: FeedbackService) -> None:
        self._service = service

    async def RecordEvents(
        self, request: pb.RecordEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordEventsResponse:
        return _response(await self._service.record(_rows(request.events), current_caller().name))

    async def StreamEvents(
        self,
        request_iterator: AsyncIterator[pb.StreamEventsRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.StreamEventsResponse]:
        async def batches() -> AsyncIterator[tuple[int, list[EventRow]]]:
            async for request in request_iterator:
                yield request.sequence, _rows(request.events)

        async for sequence, result in self._service.record_stream(batches(), current_caller().name):
            yield pb.StreamEventsResponse(sequence=sequence, result=_response(result))
