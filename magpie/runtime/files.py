"""Files that change under a running process: mounted Secrets and certificates.

Kubernetes updates a mounted Secret by swapping a symlink, and cert-manager
renews certificates the same way; `WatchedFile` re-reads its files when one of
them changed (checked at most once a second) and keeps the last good value if
the new content does not parse, so a half-written or broken update never takes
a working process down.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["WatchedFile", "WatchedFiles"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_CHECK_SECONDS = 1.0


def _stamp(path: str) -> tuple[int, int, int]:
    status = os.stat(path)  # follows the Secret's symlinks to the real file
    return status.st_ino, status.st_mtime_ns, status.st_size


class WatchedFiles(Generic[T]):
    """The value `parse` makes of the files' contents, refreshed when one of them changes."""

    def __init__(self, paths: Sequence[str], parse: Callable[[Sequence[bytes]], T]) -> None:
        self._paths = tuple(paths)
        self._parse = parse
        self._stamps = tuple(_stamp(p) for p in self._paths)
        self._value = parse([self._read(p) for p in self._paths])
        self._checked_at = time.monotonic()
        self.generation = 0
        """Counts the reloads: lets a user rebuild what it made from an older value."""

    @staticmethod
    def _read(path: str) -> bytes:
        with open(path, "rb") as file:
            return file.read()

    def current(self) -> T:
        now = time.monotonic()
        if now - self._checked_at >= _CHECK_SECONDS:
            self._checked_at = now
            self._reload_if_changed()
        return self._value

    def _reload_if_changed(self) -> None:
        try:
            stamps = tuple(_stamp(p) for p in self._paths)
            if stamps == self._stamps:
                return
            value = self._parse([self._read(p) for p in self._paths])
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning("keeping the loaded %s: reload failed: %s", self._paths, error)
            return
        self._stamps, self._value = stamps, value
        self.generation += 1
        logger.info("reloaded %s", ", ".join(self._paths))


class WatchedFile(WatchedFiles[T]):
    """One text file's parsed value, refreshed when the file changes."""

    def __init__(self, path: str, parse: Callable[[str], T]) -> None:
        super().__init__([path], lambda contents: parse(contents[0].decode()))
