"""``python -m services.console``: the web console on ``host:console_port`` until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator

import uvicorn

from magpie.runtime.entrypoint import settings_or_exit
from magpie.runtime.logs import configure_logging
from magpie.runtime.telemetry import setup_tracing
from services.console.server import NAME, build_app


class _Server(uvicorn.Server):
    """Uvicorn, stopping on SIGTERM or SIGINT like the gRPC services: drain, then exit 0
    (uvicorn's own handlers re-raise the signal once drained, ending the process by it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop)
        try:
            yield
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    def _stop(self) -> None:
        self.should_exit = True


def main() -> None:
    settings = settings_or_exit()
    configure_logging(NAME, settings.log_level, json_lines=settings.log_json)
    # A page is opened by a person, rarely: trace every one unless told otherwise, so the
    # trace a page links to exists (the services follow the console's sampling decision).
    setup_tracing(NAME, settings, {"OTEL_TRACES_SAMPLER": "parentbased_always_on", **os.environ})
    server = _Server(
        uvicorn.Config(
            build_app(settings),
            host=settings.host,
            port=settings.console_port,
            log_config=None,  # the root logger's JSON lines (configure_logging)
            access_log=False,  # a request line holds a user id, which Magpie never logs
            timeout_graceful_shutdown=int(settings.grace_seconds),
        )
    )
    asyncio.run(server.serve())


main()
