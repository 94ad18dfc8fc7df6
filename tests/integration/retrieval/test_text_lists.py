"""Content neighbours from kept per-anchor lists equal an exhaustive search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from magpie.contract.signature import FIRST_ITEM_INDEX
from services.retrieval.model import load_bundle


def _exhaustive(
    text: NDArray[np.float32], anchors: NDArray[np.int64], weights: NDArray[np.float32], k: int
) -> list[int]:
    scores = (text @ text[anchors].T * weights).max(axis=1)
    scores[:FIRST_ITEM_INDEX] = -np.inf
    scores[anchors] = -np.inf
    return [int(r) for r in np.argsort(-scores, kind="stable")[:k]]


@pytest.mark.parametrize("k", [1, 10, 60])
def test_kept_lists_give_the_exhaustive_answer(bundles: Path, k: int) -> None:
    model = load_bundle(1, bundles / "1")
    rng = np.random.default_rng(k)
    for _ in range(5):
        anchors = rng.choice(np.arange(FIRST_ITEM_INDEX, len(model.item_ids)), 3, replace=False)
        weights = np.array([1.0, 0.9, 0.81], dtype=np.float32)
        found = model.similar_texts(anchors, weights, k)
        assert found.rows.tolist() == _exhaustive(model.text_vectors, anchors, weights, k)
        assert set(found.anchors.tolist()) <= set(anchors.tolist())
    assert 0 < len(model.text_lists) <= 15
