"""The server interceptor every Magpie service runs behind.

For each call it records the deadline (see `deadline`), validates the request
(and each streamed request) with the service's validators, and maps raised
`MagpieError`s to their gRPC status with `google.rpc` rich details. Any other
exception is logged with its traceback and answered as a bare INTERNAL: a
caller never sees a Python traceback. It also counts every call by method and code,
times it (RED metrics, :mod:`magpie.runtime.metrics`) and keeps the in-flight gauge.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from magpie.runtime.deadline import set_deadline_from
from magpie.runtime.errors import InvalidArgument, MagpieError
from magpie.runtime.metrics import RPC_DURATION, RPC_IN_FLIGHT, RPC_REQUESTS, observe
from magpie.runtime.validation import Validators

__all__ = ["ServiceInterceptor", "status_for"]

logger = logging.getLogger(__name__)


def status_for(error: Exception) -> grpc.Status:
    """The gRPC status (with rich details) that answers `error`."""
    if not isinstance(error, MagpieError):
        return rpc_status.to_status(
            status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")
        )
    code = error.grpc_status_code.value[0]
    status = status_pb2.Status(code=code, message=str(error) or error.grpc_status_code.name)
    if isinstance(error, InvalidArgument):
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
        )
        status.details.append(detail)
    return rpc_status.to_status(status)


def _code(error: Exception) -> str:
    """The status code name an error is answered with."""
    return error.grpc_status_code.name if isinstance(error, MagpieError) else "INTERNAL"


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, validators: Validators) -> None:
        self._validators = validators

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
        async for request in requests:
            self._validate(request)
            yield request

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

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext, method: str, error: Exception) -> None:
        if isinstance(error, MagpieError) and type(error) is not MagpieError:
            logger.info("%s failed: %s: %s", method, type(error).__name__, error)
        else:
            logger.error("%s failed unexpectedly", method, exc_info=error)
        await context.abort_with_status(status_for(error))

    def _unary_response(
        self, behaviour: Callable[..., Any], method: str, streaming_request: bool
    ) -> Callable[..., Any]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            set_deadline_from(context.time_remaining())
            started = time.perf_counter()
            RPC_IN_FLIGHT.inc()
            try:
                reply = await behaviour(self._checked(request, streaming_request), context)
                self._count(method, "OK", started)
                return reply
            except Exception as error:  # noqa: BLE001 - mapped to a status below
                failure = error
                self._count(method, _code(error), started)
            finally:
                RPC_IN_FLIGHT.dec()
            await self._abort(context, method, failure)

        return handle

    def _stream_response(
        self, behaviour: Callable[..., Any], method: str, streaming_request: bool
    ) -> Callable[..., Any]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            set_deadline_from(context.time_remaining())
            started = time.perf_counter()
            RPC_IN_FLIGHT.inc()
            try:
                async for response in behaviour(self._checked(request, streaming_request), context):
                    yield response
                self._count(method, "OK", started)
                return
            except Exception as error:  # noqa: BLE001 - mapped to a status below
                failure = error
                self._count(method, _code(error), started)
            finally:
                RPC_IN_FLIGHT.dec()
            await self._abort(context, method, failure)

        return handle
