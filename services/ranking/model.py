"""The model version the ranking service serves, and how it follows the registry.

The ranker itself runs in Triton; this side holds what turns a request into the
ranker's inputs for one version (its item vocabulary and the co-visitation lists its
candidate features come from) plus the text embeddings used for diversity. A request
uses one version end to end: the Triton call names the version whose vocabulary built
its inputs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np

from magpie.contract.covisitation import Covisitation
from magpie.contract.inputs import context_vector, pad_left
from magpie.contract.signature import FIRST_ITEM_INDEX, HISTORY_LEN, OOV_INDEX
from magpie.modelstore import bundle
from services.ranking.domain import Floats, Ids

__all__ = ["ServingModel", "load_serving_model"]


@dataclass(frozen=True)
class ServingModel:
    version: int
    positions: dict[str, int]
    """Product id -> vocabulary index of this version."""
    text_vectors: Floats
    """float32 [vocab, dim], unit rows; zero rows for PAD/OOV."""
    covisitation: Covisitation
    """This version's co-visitation lists: the ranker's candidate features."""

    @property
    def version_name(self) -> str:
        return str(self.version)

    def indices(self, product_ids: Sequence[str]) -> Ids:
        rows = map(self.positions.get, product_ids, repeat(OOV_INDEX))  # a loop in C
        return np.fromiter(rows, np.int64, len(product_ids))

    def inputs(
        self,
        recent_newest_first: Sequence[str],
        candidate_ids: Sequence[str],
        now: float,
        last_event_at: float | None,
        device: str,
    ) -> tuple[Ids, Ids, Floats, Floats]:
        """history_ids [1, HISTORY_LEN], candidate_ids [1, C], context [1, D] and
        candidate_features [1, C, CANDIDATE_FEATURE_DIM]: the ranker's inputs, the
        features computed from the very index arrays sent, as in training."""
        recent = self.indices(list(reversed(recent_newest_first[:HISTORY_LEN])))
        history = pad_left([recent.tolist()], HISTORY_LEN)
        candidates = self.indices(candidate_ids)[None, :]
        return (
            history,
            candidates,
            context_vector(now, last_event_at, device)[None, :],
            self.covisitation.features(history, candidates),
        )

    def text_rows(self, product_ids: Sequence[str]) -> Floats:
        rows: Floats = self.text_vectors[self.indices(product_ids)]
        return rows


def load_serving_model(version: int, directory: Path) -> ServingModel:
    item_ids = json.loads((directory / bundle.VOCAB).read_text())["item_ids"]
    positions = {pid: i + FIRST_ITEM_INDEX for i, pid in enumerate(item_ids)}
    text = np.load(directory / bundle.TEXT_VECTORS).astype(np.float32, copy=False)
    with np.load(directory / bundle.COVISITATION) as arrays:
        covisitation = Covisitation.from_arrays(arrays)
    return ServingModel(version, positions, text, covisitation)
