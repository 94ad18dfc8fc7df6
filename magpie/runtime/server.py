"""The gRPC server runtime shared by every service.

A service describes itself with a `ServiceSpec` (what to register, how to
validate requests, which dependencies decide its health); `start_server` turns
that into a listening asyncio server with health checking, reflection and the
Magpie interceptor, without blocking; `serve` runs one until SIGTERM/SIGINT and
then drains: health goes NOT_SERVING, new calls are refused, calls in flight
get `grace_seconds` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from magpie.runtime.admission import Admission
from magpie.runtime.auth import Authenticator
from magpie.runtime.deadline import set_deadline_from
from magpie.runtime.interceptors import ServiceInterceptor
from magpie.runtime.settings import SERVICE_PORTS, Settings
from magpie.runtime.telemetry import tracing_enabled
from magpie.runtime.tls import server_credentials, tls_enabled
from magpie.runtime.units import MAX_MESSAGE_BYTES
from magpie.runtime.validation import Validators

__all__ = ["Probe", "RunningServer", "ServiceSpec", "serve", "start_server"]

logger = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[None]]
"""Raises when a dependency the service cannot work without is down."""

_STOP_MARGIN_SECONDS = 5.0
"""How long past its grace a stopping gRPC server is waited for."""
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    """Short name used in logs and the CLI, e.g. "profiles"; a key of ``SERVICE_PORTS``."""
    service_names: Sequence[str]
    """Full protobuf service names, e.g. "magpie.v1.ProfileService"."""
    register: Callable[[grpc.aio.Server], None]
    validators: Validators = field(default_factory=dict)
    probes: Sequence[Probe] = ()
    close: Callable[[], Awaitable[None]] | None = None
    """Releases the service's resources after the server and its background work stopped."""
    interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
    """Extra interceptors run after tracing and before the Magpie interceptor."""
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()
    """Work run as tasks while the server runs (e.g. an event consumer); cancelled on stop."""
    max_request_bytes: int = 4 * 1024 * 1024
    """Largest request accepted (larger ones are refused before they are parsed): sized
    from the service's own batch limits."""


class RunningServer:
    """A started server; `stop` drains it and releases the service's resources."""

    def __init__(
        self,
        spec: ServiceSpec,
        server: grpc.aio.Server,
        port: int,
        health_servicer: health.aio.HealthServicer,
        probe_seconds: float,
        probe_timeout: float,
        probe_server: grpc.aio.Server | None = None,
    ) -> None:
        """``probe_server``: the plaintext health-only server beside a TLS one, if any."""
        self.spec = spec
        self.port = port
        self._server = server
        self._probe_server = probe_server
        self._health = health_servicer
        self._healthy: bool | None = None
        self._probe_timeout = probe_timeout
        self._monitor = asyncio.create_task(self._watch_dependencies(probe_seconds))
        self._background = [asyncio.create_task(work()) for work in spec.background]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def check_dependencies(self) -> bool:
        """Probes the dependencies once and publishes the result as health status; a probe
        that has not answered within the probe timeout failed."""
        healthy = True
        for probe in self.spec.probes:
            try:
                await asyncio.wait_for(
                    asyncio.create_task(_probe_by(probe, self._probe_timeout)),
                    self._probe_timeout,
                )
            except Exception as error:  # noqa: BLE001 - any failure means not serving
                logger.debug("health probe failed: %r", error)
                healthy = False
        if healthy != self._healthy:
            logger.info("%s is %s", self.spec.name, "SERVING" if healthy else "NOT_SERVING")
            self._healthy = healthy
        status = _SERVING if healthy else _NOT_SERVING
        for name in ("", *self.spec.service_names):
            await self._health.set(name, status)
        return healthy

    async def _watch_dependencies(self, probe_seconds: float) -> None:
        while True:
            await self.check_dependencies()
            await asyncio.sleep(probe_seconds)

    async def stop(self, grace_seconds: float) -> None:
        self._monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._monitor
        await self._health.enter_graceful_shutdown()
        # grpc.aio's shutdown has been seen to never complete (once in a CI run, after all
        # calls had ended): a drain that outlives its grace would block SIGTERM (and a test's
        # teardown) forever. The stop goes on as a task; we stop waiting for it.
        stopping = asyncio.ensure_future(self._server.stop(grace_seconds))
        try:
            await asyncio.wait_for(asyncio.shield(stopping), grace_seconds + _STOP_MARGIN_SECONDS)
        except TimeoutError:
            logger.error(
                "%s: the gRPC server did not stop within %.1fs; releasing resources anyway",
                self.spec.name,
                grace_seconds + _STOP_MARGIN_SECONDS,
            )
        if self._probe_server is not None:
            await self._probe_server.stop(0)
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.spec.close is not None:
            await self.spec.close()
        logger.info("%s stopped", self.spec.name)


async def _probe_by(probe: Probe, seconds: float) -> None:
    """Runs `probe` as a call with a deadline `seconds` away (in a task of its own, so the
    deadline stays there): a database call or downstream gRPC call it makes is bounded by
    it, and cannot queue behind stuck work for longer."""
    set_deadline_from(seconds)
    await probe()


async def start_server(spec: ServiceSpec, settings: Settings) -> RunningServer:
    """Builds, binds and starts the server; returns at once."""
    tracing: list[grpc.aio.ServerInterceptor] = []
    if tracing_enabled():
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        tracing.append(aio_server_interceptor())  # type: ignore[no-untyped-call]
    authenticator = None
    if settings.auth_tokens_file:
        authenticator = Authenticator(settings.auth_tokens_file)
    else:
        logger.warning("%s: no MAGPIE_AUTH_TOKENS_FILE: every caller may call anything", spec.name)
    magpie = ServiceInterceptor(
        spec.validators,
        authenticator=authenticator,
        admission=Admission(
            settings.max_in_flight,
            rate_per_caller=settings.rate_limit_per_caller,
            burst=settings.rate_limit_burst,
        ),
        stream_idle_seconds=settings.stream_idle_seconds,
    )
    server = grpc.aio.server(
        interceptors=[*tracing, *spec.interceptors, magpie],
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", spec.max_request_bytes),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    spec.register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection_enabled:
        reflection.enable_server_reflection(
            [*spec.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
    port = settings.port if settings.port is not None else SERVICE_PORTS[spec.name]
    address = f"{settings.host}:{port}"
    probe_server = None
    if tls_enabled(settings):
        bound = server.add_secure_port(address, server_credentials(settings))
        if settings.probe_port is not None:
            probe_server = await _start_probe_server(health_servicer, settings)
    else:
        bound = server.add_insecure_port(address)
    await server.start()
    running = RunningServer(
        spec,
        server,
        bound,
        health_servicer,
        settings.health_probe_seconds,
        settings.health_probe_timeout_seconds,
        probe_server,
    )
    await running.check_dependencies()
    logger.info("%s listening on %s:%d", spec.name, settings.host, bound)
    return running


async def _start_probe_server(
    health_servicer: health.aio.HealthServicer, settings: Settings
) -> grpc.aio.Server:
    """A plaintext server of the health service alone, for kubelet gRPC probes (which do
    not speak TLS); it shares the service's health status."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"{settings.host}:{settings.probe_port}")
    await server.start()
    return server


async def serve(spec: ServiceSpec, settings: Settings) -> None:
    """Runs a server until SIGTERM or SIGINT, then drains it."""
    running = await start_server(spec, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    logger.info("%s draining (grace %.1fs)", spec.name, settings.grace_seconds)
    await running.stop(settings.grace_seconds)
