import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from magpie.runtime import errors
from magpie.runtime.interceptors import status_for


def _all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_all_subclasses(sub)]
    return found


@pytest.mark.parametrize("cls", _all_subclasses(errors.MagpieError), ids=lambda c: c.__name__)
def test_every_error_class_has_its_own_status(cls: type[errors.MagpieError]) -> None:
    assert cls.grpc_status_code is not grpc.StatusCode.INTERNAL
    assert cls.grpc_status_code is not grpc.StatusCode.OK


def test_invalid_argument_carries_field_violations_as_bad_request() -> None:
    error = errors.InvalidArgument(
        [errors.FieldViolation("events[2].event_id", "must not be empty")]
    )

    status = status_for(error)

    assert status.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "events[2].event_id" in status.details
    (key, value) = status.trailing_metadata[0]
    assert key == "grpc-status-details-bin"
    rich = rpc_status.status_pb2.Status.FromString(value)
    bad_request = error_details_pb2.BadRequest()
    assert rich.details[0].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("events[2].event_id", "must not be empty")
    ]


def test_unexpected_exception_becomes_bare_internal_without_its_text() -> None:
    status = status_for(KeyError("secret internals"))

    assert status.code is grpc.StatusCode.INTERNAL
    assert "secret" not in status.details


def test_invalid_argument_requires_a_violation() -> None:
    with pytest.raises(ValueError, match="at least one"):
        errors.InvalidArgument([])
