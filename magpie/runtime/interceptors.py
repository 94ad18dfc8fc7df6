"""The server interceptor every Magpie service runs behind.

For each call it records the deadline (see `deadline`), authenticates and
authorizes the caller (`auth`, when the service has a tokens file), admits the
call or refuses it as overload (`admission`), validates the request
(and each streamed request) with the service's validators, and maps raised
`MagpieError`s to their gRPC status with `google.rpc` rich details. Any other
exception is logged with its traceback and answered as a bare INTERNAL: a
caller never sees a Python traceback. It also counts every call by method and code,
times it (RED metrics, :mod:`magpie.runtime.metrics`) and keeps the in-flight gauge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from magpie.runtime.admission import Admission
from magpie.runtime.auth import ANONYMOUS, HEALTH_METHODS, Authenticator, set_caller
from magpie.runtime.deadline import set_deadline_from
from magpie.runtime.errors import DeadlineExceeded, InvalidArgument, MagpieError, ResourceExhausted
from magpie.runtime.metrics import RPC_DURATION, RPC_IN_FLIGHT, RPC_REQUESTS, observe
from magpie.runtime.validation import Validators

__all__ = ["ServiceInterceptor", "status_for"]

logger = logging.getLogger(__name__)


_MAX_VIOLATIONS = 10
"""Field violations an INVALID_ARGUMENT carries (the first ones). A status travels in the
trailers, which a gRPC client refuses beyond 8-16 KiB: it would then see RESOURCE_EXHAUSTED
instead of the answer, so a status stays well under that whatever the request held."""
_MAX_TEXT = 200
"""Characters kept of a violation's field and description (they may echo the request)."""
_MAX_MESSAGE = 2000
"""Characters kept of a status message."""


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else f"{text[: most - 3]}..."


def status_for(error: Exception) -> grpc.Status:
    """The gRPC status (with rich details) that answers `error`, small enough for any client."""
    if not isinstance(error, MagpieError):
        return rpc_status.to_status(
            status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")
        )
    code = error.grpc_status_code.value[0]
    message = str(error) or error.grpc_status_code.name
    if isinstance(error, InvalidArgument):
        shown = [
            (_cut(v.field, _MAX_TEXT), _cut(v.description, _MAX_TEXT))
            for v in error.violations[:_MAX_VIOLATIONS]
        ]
        message = "; ".join(f"{field}: {description}" for field, description in shown)
        if len(error.violations) > _MAX_VIOLATIONS:
            message += f"; and {len(error.violations) - _MAX_VIOLATIONS} more"
    status = status_pb2.Status(code=code, message=_cut(message, _MAX_MESSAGE))
    if isinstance(error, InvalidArgument):
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in shown
                ]
            )
        )
        status.details.append(detail)
    return rpc_status.to_status(status)


def _code(error: Exception) -> str:
    """The status code name an error is answered with."""
    return error.grpc_status_code.name if isinstance(error, MagpieError) else "INTERNAL"


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        validators: Validators,
        *,
        authenticator: Authenticator | None = None,
        admission: Admission | None = None,
        stream_idle_seconds: float | None = None,
    ) -> None:
        """``stream_idle_seconds``: a request stream silent this long is ended."""
        self._validators = validators
        self._authenticator = authenticator
        self._admission = admission
        self._stream_idle = stream_idle_seconds

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        wrap = {
            "unary_unary": (self._unary_response, False, grpc.unary_unary_rpc_method_handler),
            "stream_unary": (self._unary_response, True, grpc.stream_unary_rpc_method_handler),
            "unary_stream": (self._stream_response, False, grpc.unary_stream_rpc_method_handler),
            "stream_stream": (self._stream_response, True, grpc.stream_stream_rpc_method_handler),
        }
        for kind, (wrapper, streaming_request, make_handler) in wrap.items():
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                return make_handler(
                    wrapper(behaviour, method, streaming_request),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler

    def _validate(self, request: Any) -> None:
        validator = self._validators.get(type(request))
        if validator is not None:
            validator(request)

    async def _validated(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        iterator = aiter(requests)
        while True:
            try:
                request = await asyncio.wait_for(anext(iterator), self._stream_idle)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise DeadlineExceeded(
                    f"no message on the stream for {self._stream_idle:g}s"
                ) from None
            self._validate(request)
            yield request

    def _admit(self, method: str, context: grpc.aio.ServicerContext) -> bool:
        """Authorizes and admits the call (raising if refused); True when it took a slot."""
        time_remaining = context.time_remaining()
        set_deadline_from(time_remaining)
        caller = ANONYMOUS
        if self._authenticator is not None:
            caller = self._authenticator.authorize(method, context.invocation_metadata())
        set_caller(caller)
        # Health is never refused: probes must tell overload from failure.
        if self._admission is None or method.startswith(HEALTH_METHODS):
            return False
        self._admission.enter(method, caller.name, time_remaining)
        return True

    def _checked(self, request: Any, streaming_request: bool) -> Any:
        """The request (or request stream) as the handler should see it: validated."""
        if streaming_request:
            return self._validated(request)
        self._validate(request)
        return request

    @staticmethod
    def _count(method: str, code: str, started: float) -> None:
        RPC_REQUESTS.labels(method=method, code=code).inc()
        observe(RPC_DURATION, time.perf_counter() - started, method=method)

    def _leave(self, method: str, seconds: float | None) -> None:
        assert self._admission is not None
        self._admission.leave(method, seconds)

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext, method: str, error: Exception) -> None:
        if isinstance(error, ResourceExhausted):
            logger.debug("%s refused: %s", method, error)  # overload: one line per call is too many
        elif isinstance(error, MagpieError) and type(error) is not MagpieError:
            logger.info("%s failed: %s: %s", method, type(error).__name__, error)
        else:
            logger.error("%s failed unexpectedly", method, exc_info=error)
        await context.abort_with_status(status_for(error))

    def _unary_response(
        self, behaviour: Callable[..., Any], method: str, streaming_request: bool
    ) -> Callable[..., Any]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            RPC_IN_FLIGHT.inc()
            admitted, took = False, None
            try:
                admitted = self._admit(method, context)
                reply = await behaviour(self._checked(request, streaming_request), context)
                took = time.perf_counter() - started
                self._count(method, "OK", started)
                return reply
            except Exception as error:  # noqa: BLE001 - mapped to a status below
                failure = error
                self._count(method, _code(error), started)
            finally:
                RPC_IN_FLIGHT.dec()
                if admitted:
                    self._leave(method, took)
            await self._abort(context, method, failure)

        return handle

    def _stream_response(
        self, behaviour: Callable[..., Any], method: str, streaming_request: bool
    ) -> Callable[..., Any]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            RPC_IN_FLIGHT.inc()
            admitted = False
            try:
                admitted = self._admit(method, context)
                async for response in behaviour(self._checked(request, streaming_request), context):
                    yield response
                self._count(method, "OK", started)
                return
            except Exception as error:  # noqa: BLE001 - mapped to a status below
                failure = error
                self._count(method, _code(error), started)
            finally:
                RPC_IN_FLIGHT.dec()
                if admitted:
                    self._leave(method, None)  # a stream's length says nothing of its cost
            await self._abort(context, method, failure)

        return handle
