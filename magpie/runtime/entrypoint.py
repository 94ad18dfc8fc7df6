"""Entry point shared by the services' `__main__` modules."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable

from pydantic import ValidationError

from magpie.runtime.heap import start_freezing
from magpie.runtime.logs import configure_logging
from magpie.runtime.metrics import serve_metrics
from magpie.runtime.server import ServiceSpec, serve
from magpie.runtime.settings import Settings, load_settings
from magpie.runtime.telemetry import setup_tracing

__all__ = ["main", "settings_or_exit"]

logger = logging.getLogger(__name__)


def settings_or_exit() -> Settings:
    """The process's settings; invalid ones end it with status 2 and say why on stderr."""
    try:
        return load_settings()
    except ValidationError as error:
        print(f"invalid settings: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def main(name: str, build_spec: Callable[[Settings], ServiceSpec]) -> None:
    """Loads settings, configures logging (before anything else runs), tracing and
    metrics, builds the service ``name`` and serves it until SIGTERM."""
    settings = settings_or_exit()
    configure_logging(name, settings.log_level, json_lines=settings.log_json)
    setup_tracing(name, settings)
    serve_metrics(name, settings)
    asyncio.run(_build_and_serve(build_spec, settings))


async def _build_and_serve(
    build_spec: Callable[[Settings], ServiceSpec], settings: Settings
) -> None:
    # Built inside the event loop: gRPC aio channels and Redis clients bind to it.
    spec = build_spec(settings)
    start_freezing()
    await serve(spec, settings)
