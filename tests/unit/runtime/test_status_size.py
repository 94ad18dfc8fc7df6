"""An error's status fits in the trailers every gRPC client accepts, whatever the request
held (found by fuzzing, issue 17: a client refuses trailers over 16 KiB and reports
RESOURCE_EXHAUSTED in place of the server's INVALID_ARGUMENT)."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from magpie.runtime import errors
from magpie.runtime.interceptors import status_for

_SOFT_LIMIT = 8 * 1024
"""gRPC's default soft limit on received metadata (the hard one is 16 KiB)."""


def _trailer_bytes(status: grpc.Status) -> int:
    return len(status.details.encode()) + sum(
        len(key) + len(value) for key, value in status.trailing_metadata
    )


def test_thousands_of_violations_fit_in_the_trailers_and_say_how_many_were_left_out() -> None:
    violations = [
        errors.FieldViolation(f"product_ids[{i}]", "must be at most 128 characters")
        for i in range(2001)
    ]

    status = status_for(errors.InvalidArgument(violations))

    assert status.code is grpc.StatusCode.INVALID_ARGUMENT
    assert _trailer_bytes(status) < _SOFT_LIMIT
    assert "product_ids[0]: must be at most 128 characters" in status.details
    assert "1991 more" in status.details
    rich = rpc_status.status_pb2.Status.FromString(
        dict(status.trailing_metadata)["grpc-status-details-bin"]
    )
    bad_request = error_details_pb2.BadRequest()
    assert rich.details[0].Unpack(bad_request)
    assert bad_request.field_violations[0].field == "product_ids[0]"


def test_a_huge_value_echoed_in_a_description_or_message_is_cut() -> None:
    huge = "x" * 100_000
    invalid = errors.InvalidArgument(
        [errors.FieldViolation("filter.min_price.currency_code", f"got {huge!r}")]
    )

    for error in (invalid, errors.NotFound(f"product {huge!r} not found")):
        status = status_for(error)
        assert _trailer_bytes(status) < _SOFT_LIMIT, error.grpc_status_code
