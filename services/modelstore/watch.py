"""Follows the registry's promoted model version in a serving process.

`ModelWatcher` polls for the promoted version, loads a new one off the event
loop with the service's own loader, and then swaps a single reference, so a
request that already holds the old object finishes on it and the next one gets
the new version. A failed load keeps the loaded version serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["ModelWatcher"]

logger = logging.getLogger(__name__)

M = TypeVar("M")


class ModelWatcher(Generic[M]):
    def __init__(
        self,
        name: str,
        active_version: Callable[[], Awaitable[int | None]],
        load: Callable[[int, Path], M],
        artifact_dir: Path,
        poll_seconds: float,
    ) -> None:
        self._name = name
        self._active_version = active_version
        self._load = load
        self._artifact_dir = artifact_dir
        self._poll_seconds = poll_seconds
        self._current: M | None = None
        self._version: int | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def current(self) -> M | None:
        return self._current

    @property
    def version(self) -> int | None:
        return self._version

    async def refresh(self) -> bool:
        """Loads the promoted version unless it is already served; True when it swapped."""
        version = await self._active_version()
        if version is None or version == self._version:
            return False
        model = await asyncio.to_thread(self._load, version, self._artifact_dir / str(version))
        self._current, self._version = model, version
        logger.info("%s now serves model version %d", self._name, version)
        return True

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                await self.refresh()
            except Exception as error:  # noqa: BLE001 - keep serving the loaded version
                logger.warning("%s model refresh failed: %s", self._name, error)

    async def start(self) -> None:
        """Loads the promoted version now (if any), then keeps polling in the background."""
        try:
            await self.refresh()
        except Exception as error:  # noqa: BLE001 - serve degraded until a version loads
            logger.warning("%s could not load a model at start: %s", self._name, error)
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
