"""Follows the registry's aliases in a serving process.

`ModelWatcher` polls the aliases (``champion``, ``previous``, ``staged``) and keeps every
version they name loaded, so that a promotion and a rollback are a switch between
objects that are ready, never a load on the request path. A version is loaded off the
event loop, on a thread of lowered CPU priority (the cores keep serving requests first),
with the service's own loader; then the champion's reference is swapped, so a request
that already holds the old object finishes on it and the next one gets the new version.
After each poll the watcher reports the versions it holds (``serving_replicas``), which is
what a rollout waits for before it switches. A failed load keeps what is loaded serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Generic, TypeVar

from magpie.modelstore import registry
from magpie.modelstore.replicas import replica_id, report_loaded
from magpie.runtime.db import Database
from magpie.runtime.heap import freeze_long_lived
from magpie.runtime.metrics import SERVED_MODEL_VERSION
from magpie.runtime.settings import Settings

__all__ = ["LOAD_NICENESS", "ModelWatcher", "registry_watcher"]

logger = logging.getLogger(__name__)

M = TypeVar("M")

LOAD_NICENESS = 10
"""How much lower than the request threads a model load runs (Linux thread niceness)."""


def _lower_priority() -> None:
    """Runs on the loading thread itself: on Linux a thread id names one thread."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOAD_NICENESS)


class ModelWatcher(Generic[M]):
    def __init__(
        self,
        name: str,
        aliases: Callable[[], Awaitable[Mapping[str, int]]],
        load: Callable[[int, Path], M],
        artifact_dir: Path,
        poll_seconds: float,
        report: Callable[[Sequence[int]], Awaitable[None]] | None = None,
    ) -> None:
        """``aliases`` reads alias -> version from the registry; ``report`` records the
        versions this replica has loaded (after every poll)."""
        self._name = name
        self._aliases = aliases
        self._load = load
        self._artifact_dir = artifact_dir
        self._poll_seconds = poll_seconds
        self._report = report
        self._loaded: dict[int, M] = {}
        self._failed: set[int] = set()
        self._version: int | None = None
        self._loader = ThreadPoolExecutor(
            1, thread_name_prefix=f"{name}-model-load", initializer=_lower_priority
        )

    @property
    def current(self) -> M | None:
        """The champion's model (the last champion that loaded, if the new one failed)."""
        return None if self._version is None else self._loaded.get(self._version)

    @property
    def version(self) -> int | None:
        return self._version

    @property
    def loaded_versions(self) -> list[int]:
        return sorted(self._loaded)

    def held(self, version: int) -> M | None:
        """The model of ``version`` if it is loaded (the champion, previous or staged
        version, or a champion kept while its successor failed to load), else None."""
        return self._loaded.get(version)

    def failed(self, version: int) -> bool:
        """Whether loading ``version`` failed (it is not tried again)."""
        return version in self._failed

    async def refresh(self) -> bool:
        """Loads what the aliases name and is not loaded yet (the champion first), drops
        what they no longer name, and switches to the champion. True when it switched."""
        wanted = dict(await self._aliases())
        champion = wanted.get("champion")
        order = sorted(set(wanted.values()), key=lambda v: (v != champion, -v))
        loop = asyncio.get_running_loop()
        for version in order:
            if version in self._loaded or version in self._failed:
                continue
            try:
                model = await loop.run_in_executor(
                    self._loader, self._load, version, self._artifact_dir / str(version)
                )
            except Exception as error:  # noqa: BLE001 - this version is not servable
                logger.warning("%s cannot load model version %d: %s", self._name, version, error)
                self._failed.add(version)
                continue
            freeze_long_lived()
            self._loaded[version] = model
            logger.info("%s loaded model version %d", self._name, version)
        switched = champion is not None and champion in self._loaded and champion != self._version
        if switched and champion is not None:
            self._version = champion
            SERVED_MODEL_VERSION.labels(service=self._name).set(champion)
            logger.info("%s now serves model version %d", self._name, champion)
        keep = set(wanted.values()) | ({self._version} if self._version is not None else set())
        for version in [v for v in self._loaded if v not in keep]:
            del self._loaded[version]
        if self._report is not None:
            await self._report(self.loaded_versions)
        return switched

    async def run(self) -> None:
        """Loads the aliased versions now, then polls; a service background task."""
        try:
            while True:
                try:
                    await self.refresh()
                except Exception as error:  # noqa: BLE001 - keep serving what is loaded
                    logger.warning("%s model refresh failed: %s", self._name, error)
                await asyncio.sleep(self._poll_seconds)
        finally:
            self._loader.shutdown(wait=False, cancel_futures=True)


def registry_watcher(
    service: str, db: Database, settings: Settings, load: Callable[[int, Path], M]
) -> ModelWatcher[M]:
    """A watcher of ``settings.model_name``'s aliases for one replica of ``service``, loading
    bundles from ``settings.artifact_dir`` with ``load`` and reporting to the registry."""
    name = settings.model_name
    replica = replica_id()

    async def aliases() -> Mapping[str, int]:
        found = await db.run(lambda conn: registry.aliases(conn, name))
        named: dict[str, int] = dict(found.items())
        return named

    async def report(versions: Sequence[int]) -> None:
        await db.run(lambda conn: report_loaded(conn, service, replica, name, versions))

    return ModelWatcher(
        service, aliases, load, Path(settings.artifact_dir), settings.model_poll_seconds, report
    )
