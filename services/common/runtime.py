"""Entry point shared by the services' `__main__` modules."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable

from pydantic import ValidationError

from services.common.heap import start_freezing
from services.common.logs import configure_logging
from services.common.server import ServiceSpec, serve
from services.common.settings import Settings, load_settings

__all__ = ["main"]

logger = logging.getLogger(__name__)


def main(build_spec: Callable[[Settings], ServiceSpec]) -> None:
    """Loads settings, configures logging, builds the service and serves until SIGTERM."""
    try:
        settings = load_settings()
    except ValidationError as error:
        print(f"invalid settings: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    asyncio.run(_build_and_serve(build_spec, settings))


async def _build_and_serve(
    build_spec: Callable[[Settings], ServiceSpec], settings: Settings
) -> None:
    # Built inside the event loop: gRPC aio channels and Redis clients bind to it.
    spec = build_spec(settings)
    configure_logging(spec.name, settings.log_level, json_lines=settings.log_json)
    start_freezing()
    await serve(spec, settings)
