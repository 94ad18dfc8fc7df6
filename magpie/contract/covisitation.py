"""Co-visitation neighbour lists and the ranker's co-visitation candidate features.

The same top-neighbour lists (CSR rows, written to a bundle's ``covisitation.npz``) feed
the retrieval service's co-visitation source and the ranker's candidate features, so
the features the ranker was trained on are the ones it is served with. Scores are
those of :func:`covisitation_matrix`, the co-visitation baseline evaluated offline; both
come from one computation over the co-visited pairs (:func:`_covisited_pairs`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from magpie.contract.signature import CANDIDATE_FEATURE_NAMES, HISTORY_LEN

__all__ = ["FEATURE_DECAY", "FEATURE_RECENT", "NEIGHBOURS", "Covisitation", "covisitation_matrix"]

NEIGHBOURS = 50
"""Neighbours kept per item."""
SEQUENCE_TAIL = HISTORY_LEN
"""Only each user's most recent items count towards co-visitation."""
FEATURE_RECENT = 20
"""History items (the newest) whose neighbour lists make a candidate's features."""
FEATURE_DECAY = 0.9
"""Weight of a history item per step back from the newest."""


def covisitation_matrix(
    sequences: Sequence[Sequence[int]], vocab_size: int, window: int = 5
) -> NDArray[Any]:
    """float64 [vocab, vocab]: how often two items occur within ``window`` steps, weighted
    1/distance, each row divided by the square root of the item's frequency (the dense
    form of :func:`_covisited_pairs`, for the offline baseline)."""
    items = [np.asarray(s, dtype=np.int64) for s in sequences]
    rows, columns, scores = _covisited_pairs(items, vocab_size, window)
    matrix = np.zeros((vocab_size, vocab_size))
    matrix[rows, columns] = scores
    return matrix


@dataclass(frozen=True, slots=True)
class Covisitation:
    """Top co-visited items per vocabulary row, best first (CSR arrays)."""

    indptr: NDArray[Any]
    """int64 [vocab + 1]."""
    indices: NDArray[Any]
    """int32 neighbour rows."""
    scores: NDArray[Any]
    """float32, > 0."""

    @classmethod
    def from_sequences(
        cls, sequences: Sequence[Sequence[int]], vocab_size: int, neighbours: int = NEIGHBOURS
    ) -> Covisitation:
        """Top ``neighbours`` per item over each sequence's recent tail, scored as
        :func:`covisitation_matrix` scores (ties: the lower item first); an item is never
        its own neighbour. Only co-visited pairs are held, never the dense matrix."""
        recent = [np.asarray(list(s)[-SEQUENCE_TAIL:], dtype=np.int64) for s in sequences]
        rows, columns, scores = _covisited_pairs(recent, vocab_size)
        off_diagonal = rows != columns
        rows, columns, scores = rows[off_diagonal], columns[off_diagonal], scores[off_diagonal]
        # Best first within each row; rank = position within the row after sorting.
        order = np.lexsort((columns, -scores, rows))
        rows, columns, scores = rows[order], columns[order], scores[order]
        per_row = np.bincount(rows, minlength=vocab_size)
        starts = np.cumsum(per_row) - per_row
        keep = np.arange(len(rows)) - starts[rows] < neighbours
        kept = np.minimum(per_row, neighbours)
        return cls(
            indptr=np.concatenate([[0], np.cumsum(kept)]).astype(np.int64),
            indices=columns[keep].astype(np.int32),
            scores=scores[keep].astype(np.float32),
        )

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[Any]]) -> Covisitation:
        return cls(arrays["indptr"], arrays["indices"], arrays["scores"])

    def arrays(self) -> dict[str, NDArray[Any]]:
        """What ``np.savez`` writes and :meth:`from_arrays` reads back."""
        return {"indptr": self.indptr, "indices": self.indices, "scores": self.scores}

    @property
    def vocab_size(self) -> int:
        return len(self.indptr) - 1

    def features(self, history_ids: NDArray[Any], candidate_ids: NDArray[Any]) -> NDArray[Any]:
        """float32 [N, C, len(CANDIDATE_FEATURE_NAMES)] for candidates [N, C] of histories
        [N, L] (oldest first, left-padded; rows outside the vocabulary count as unknown).

        Features: log1p of the candidate's co-visitation score summed over the newest
        ``FEATURE_RECENT`` history items (weight ``FEATURE_DECAY`` per step back), and
        with the newest item alone.
        """
        recent = np.asarray(history_ids, dtype=np.int64)[:, -FEATURE_RECENT:]
        recent = np.where((recent >= 0) & (recent < self.vocab_size), recent, 0)
        steps_back = np.arange(recent.shape[1] - 1, -1, -1)
        weights = np.broadcast_to(FEATURE_DECAY**steps_back, recent.shape).astype(np.float32)
        candidates = np.asarray(candidate_ids, dtype=np.int64)
        candidates = np.where((candidates >= 0) & (candidates < self.vocab_size), candidates, 0)
        newest = recent[:, -1:]
        out = np.stack(
            [
                self._scores(recent, weights, candidates),
                self._scores(newest, np.ones(newest.shape, np.float32), candidates),
            ],
            axis=-1,
        )
        assert out.shape[-1] == len(CANDIDATE_FEATURE_NAMES)
        features: NDArray[Any] = np.log1p(out).astype(np.float32)
        return features

    def _scores(
        self, recent: NDArray[Any], weights: NDArray[Any], candidates: NDArray[Any]
    ) -> NDArray[Any]:
        """[N, C]: sum over each row's history items of weight x score(item -> candidate)."""
        rows, vocab = recent.shape[0], self.vocab_size
        starts, stops = self.indptr[recent], self.indptr[recent + 1]
        lengths = (stops - starts).ravel()
        total = int(lengths.sum())
        if not total:
            return np.zeros(candidates.shape, dtype=np.float32)
        # The flat positions of every neighbour of every history item, and its owner.
        firsts = np.repeat(starts.ravel() - np.cumsum(lengths) + lengths, lengths)
        spans = firsts + np.arange(total)
        owner = np.repeat(np.repeat(np.arange(rows), recent.shape[1]), lengths)
        weight = np.repeat(weights.ravel(), lengths)
        dense = np.bincount(
            owner * vocab + self.indices[spans],
            weights=self.scores[spans] * weight,
            minlength=rows * vocab,
        ).reshape(rows, vocab)
        picked: NDArray[Any] = np.take_along_axis(dense, candidates, axis=1)
        return picked.astype(np.float32)


def _covisited_pairs(
    sequences: Sequence[NDArray[Any]], vocab_size: int, window: int = 5
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
    """The co-visitation scores of the pairs that occur (diagonal included) as (rows,
    columns, float64 scores): how often two items occur within ``window`` steps of one
    sequence, weighted 1/distance, divided by the square root of the row item's frequency.
    Memory grows with the events, not with the square of the catalog."""
    if not sequences:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    items = np.concatenate(sequences)
    owner = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    keys, weights = [], []
    for distance in range(1, window + 1):
        same = owner[:-distance] == owner[distance:]
        before, after = items[:-distance][same], items[distance:][same]
        keys += [before * vocab_size + after, after * vocab_size + before]
        weights += [np.full(2 * len(before), 1.0 / distance)]
    pairs, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    sums = np.bincount(inverse, weights=np.concatenate(weights), minlength=len(pairs))
    rows, columns = pairs // vocab_size, pairs % vocab_size
    counts = np.bincount(items, minlength=vocab_size)
    return rows, columns, sums / np.sqrt(np.maximum(counts[rows], 1))
