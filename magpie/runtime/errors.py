"""Magpie's exception tree; each class knows the gRPC status it maps to.

    MagpieError                 INTERNAL (base; unexpected failures)
    ├── InvalidArgument         INVALID_ARGUMENT, with field violations
    ├── NotFound                NOT_FOUND
    ├── AlreadyExists           ALREADY_EXISTS
    ├── FailedPrecondition      FAILED_PRECONDITION
    ├── Unavailable             UNAVAILABLE (a dependency is down; retry later)
    ├── DeadlineExceeded        DEADLINE_EXCEEDED
    ├── ResourceExhausted       RESOURCE_EXHAUSTED (overloaded or over a rate limit; back off)
    ├── Unauthenticated         UNAUTHENTICATED (no valid credentials)
    └── PermissionDenied        PERMISSION_DENIED (valid credentials, role too weak)

Service code raises these; one server interceptor turns them into statuses, so
no handler builds a status itself and no Python traceback reaches a caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

__all__ = [
    "AlreadyExists",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "MagpieError",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]


class MagpieError(Exception):
    """Base of all Magpie errors; maps to INTERNAL."""

    grpc_status_code: grpc.StatusCode = grpc.StatusCode.INTERNAL


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request, named by its path, e.g. `events[3].event_id`."""

    field: str
    description: str


class InvalidArgument(MagpieError):
    grpc_status_code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: list[FieldViolation]) -> None:
        if not violations:
            raise ValueError("InvalidArgument needs at least one field violation")
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))


class NotFound(MagpieError):
    grpc_status_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(MagpieError):
    grpc_status_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(MagpieError):
    grpc_status_code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(MagpieError):
    grpc_status_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(MagpieError):
    grpc_status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(MagpieError):
    grpc_status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(MagpieError):
    grpc_status_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(MagpieError):
    grpc_status_code = grpc.StatusCode.PERMISSION_DENIED
