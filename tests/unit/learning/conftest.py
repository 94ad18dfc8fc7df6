"""A tiny generated world for the learning tests (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest

from magpie.datasets.schema import Dataset, EventKind, Interaction, Item, User
from magpie.learning.protocol import LeaveOneOut, leave_one_out
from magpie.learning.sequences import build_vocab


def tiny_dataset(users: int = 24, items: int = 30, length: int = 10, seed: int = 0) -> Dataset:
    """Users walk the catalog in steps of one from a random start, so the next item is
    predictable; timestamps increase by one hour per step."""
    rng = np.random.default_rng(seed)
    catalog = [
        Item(
            item_id=f"i{n}",
            title=f"Item {n}",
            description=f"Item {n} of group {n % 3}",
            category_path=("Things", f"group{n % 3}"),
        )
        for n in range(items)
    ]
    interactions = []
    for u in range(users):
        start = int(rng.integers(items))
        for step in range(length):
            interactions.append(
                Interaction(
                    user_id=f"u{u}",
                    item_id=f"i{(start + step) % items}",
                    kind=EventKind.RATING,
                    timestamp=1_000_000.0 + 3600.0 * (u + step),
                    rating=4.0,
                )
            )
    return Dataset("tiny", catalog, [User(f"u{u}") for u in range(users)], interactions)


@pytest.fixture
def dataset() -> Dataset:
    return tiny_dataset()


@pytest.fixture
def split(dataset: Dataset) -> LeaveOneOut:
    return leave_one_out(dataset, build_vocab(dataset.items))


@pytest.fixture
def text_table(split: LeaveOneOut) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(split.vocab.size, 16)).astype(np.float32)
