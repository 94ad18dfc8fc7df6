"""ModelWatcher keeps what the aliases name loaded, and hands out any version it holds."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from magpie.modelstore.watch import ModelWatcher


class Aliases:
    def __init__(self, **named: int) -> None:
        self.named = named

    async def __call__(self) -> Mapping[str, int]:
        return self.named


def _load(version: int, directory: Path) -> str:
    if version == 9:
        raise OSError("broken bundle")
    return f"model {version} from {directory.name}"


async def test_held_versions_are_the_loaded_ones_the_aliases_name(tmp_path: Path) -> None:
    aliases = Aliases(champion=3, previous=2, staged=9)
    watcher = ModelWatcher("ranking", aliases, _load, tmp_path, 60.0)

    await watcher.refresh()
    held_first = {v: watcher.held(v) for v in (1, 2, 3, 9)}
    aliases.named = {"champion": 2, "previous": 3}
    await watcher.refresh()
    aliases.named = {"champion": 2}
    await watcher.refresh()

    assert held_first == {1: None, 2: "model 2 from 2", 3: "model 3 from 3", 9: None}
    assert watcher.current == watcher.held(2) == "model 2 from 2"
    assert watcher.held(3) is None  # no alias names it any more: dropped
