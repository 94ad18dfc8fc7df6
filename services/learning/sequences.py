"""Item vocabulary, per-user sequences and request context features."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.datasets.schema import Item
from services.learning.signature import CONTEXT_DIM, DEVICES, OOV_INDEX, PAD_INDEX

__all__ = ["FIRST_ITEM_INDEX", "ItemVocab", "build_vocab", "context_vector", "pad_left"]

FIRST_ITEM_INDEX = 2
"""Indices below this are reserved (``PAD_INDEX``, ``OOV_INDEX``)."""


@dataclass(frozen=True, slots=True)
class ItemVocab:
    """Maps item ids to dense indices; the catalog's order fixes the indices."""

    item_ids: tuple[str, ...]
    categories: tuple[str, ...]
    """Category names; category index 0 means none (also for PAD and OOV)."""
    item_category: NDArray[Any]
    """int64 [size]: category index per vocabulary index."""

    @property
    def size(self) -> int:
        return len(self.item_ids) + FIRST_ITEM_INDEX

    positions: dict[str, int]
    """Item id -> vocabulary index."""

    def index(self, item_id: str) -> int:
        return self.positions.get(item_id, OOV_INDEX)


def build_vocab(items: Sequence[Item]) -> ItemVocab:
    """A vocabulary over ``items``; categories are the full category paths."""
    paths = sorted({" > ".join(item.category_path) for item in items})
    category_index = {path: i + 1 for i, path in enumerate(paths)}
    item_category = np.zeros(len(items) + FIRST_ITEM_INDEX, dtype=np.int64)
    for i, item in enumerate(items):
        item_category[i + FIRST_ITEM_INDEX] = category_index[" > ".join(item.category_path)]
    return ItemVocab(
        item_ids=tuple(item.item_id for item in items),
        categories=("", *paths),
        item_category=item_category,
        positions={item.item_id: i + FIRST_ITEM_INDEX for i, item in enumerate(items)},
    )


def pad_left(sequences: Sequence[Sequence[int]], length: int) -> NDArray[Any]:
    """int64 [len(sequences), length]: the last ``length`` entries of each, left-padded."""
    out = np.full((len(sequences), length), PAD_INDEX, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        tail = list(sequence)[-length:]
        if tail:
            out[row, length - len(tail) :] = tail
    return out


def context_vector(timestamp: float, previous: float | None, device: str = "") -> NDArray[Any]:
    """float32 [CONTEXT_DIM] for a request at ``timestamp`` (Unix seconds, UTC).

    ``previous`` is the time of the user's last event, ``device`` one of ``DEVICES`` or "".
    """
    hour = (timestamp / 3600.0) % 24.0
    weekday = ((timestamp / 86400.0) + 3.0) % 7.0  # 1970-01-01 was a Thursday
    gap_hours = max(timestamp - previous, 0.0) / 3600.0 if previous is not None else 0.0
    out = np.zeros(CONTEXT_DIM, dtype=np.float32)
    out[:5] = (
        math.sin(2 * math.pi * hour / 24),
        math.cos(2 * math.pi * hour / 24),
        math.sin(2 * math.pi * weekday / 7),
        math.cos(2 * math.pi * weekday / 7),
        math.log1p(gap_hours),
    )
    if device in DEVICES:
        out[5 + DEVICES.index(device)] = 1.0
    return out
