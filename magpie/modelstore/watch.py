"""Follows the registry's promoted model version in a serving process.

`ModelWatcher` polls for the promoted version, loads a new one off the event
loop with the service's own loader, and then swaps a single reference, so a
request that already holds the old object finishes on it and the next one gets
the new version. A failed load keeps the loaded version serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Generic, TypeVar

from magpie.runtime.heap import freeze_long_lived

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
        freeze_long_lived()
        self._current, self._version = model, version
        logger.info("%s now serves model version %d", self._name, version)
        return True

    async def run(self) -> None:
        """Loads the promoted version now, then polls; run it as a service background task."""
        while True:
            try:
                await self.refresh()
            except Exception as error:  # noqa: BLE001 - keep serving the loaded version
                logger.warning("%s model refresh failed: %s", self._name, error)
            await asyncio.sleep(self._poll_seconds)
