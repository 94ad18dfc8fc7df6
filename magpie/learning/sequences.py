"""The item vocabulary of a training run: dense indices from ``FIRST_ITEM_INDEX`` on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from magpie.contract.signature import FIRST_ITEM_INDEX, OOV_INDEX
from magpie.datasets.schema import Item

__all__ = ["ItemVocab", "build_vocab"]


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
