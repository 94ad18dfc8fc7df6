"""Merging ranked candidate lists from several sources under per-source quotas.

Lists arrive in priority order (``config.SOURCE_ORDER``). A product proposed by more
than one source stays with the first, with the anchor of the first that has one (an ANN
product co-visitation also proposed is still explained by the user's product that led
there); products not in ``allowed`` are dropped; each
source then keeps its best ``quota`` products. The result interleaves sources by the
share of their quota used (rank / quota), so a ``limit`` below the sum of the quotas
cuts every source proportionally.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Candidates", "first_occurrences", "merge", "proposed_ids"]


@dataclass(frozen=True, slots=True)
class Candidates:
    """Parallel arrays, best first: product ids (object), scores, sources, anchor ids."""

    product_ids: NDArray[Any]
    scores: NDArray[Any]
    sources: NDArray[Any]
    anchors: NDArray[Any]

    @classmethod
    def of(
        cls,
        source: int,
        product_ids: NDArray[Any],
        scores: NDArray[Any],
        anchors: NDArray[Any] | None = None,
    ) -> Candidates:
        """One source's ranked list; ``anchors`` "" when the source has none."""
        count = len(product_ids)
        return cls(
            np.asarray(product_ids, dtype=object),
            np.asarray(scores, dtype=np.float32),
            np.full(count, source, dtype=np.int32),
            np.full(count, "", dtype=object) if anchors is None else np.asarray(anchors, object),
        )

    def __len__(self) -> int:
        return len(self.product_ids)


def first_occurrences(values: NDArray[Any]) -> NDArray[np.bool_]:
    """True where a value appears for the first time (a hash pass: ``np.unique`` on object
    arrays sorts the strings, several times slower). The dict is built in C from the values
    last to first, so the position a value keeps is its first."""
    listed = values.tolist()
    first = dict(zip(reversed(listed), range(len(listed) - 1, -1, -1), strict=True))
    mask = np.zeros(len(listed), dtype=bool)
    mask[np.fromiter(first.values(), np.int64, len(first))] = True
    return mask


def proposed_ids(lists: Sequence[Candidates]) -> list[str]:
    """Every distinct product id proposed by any list."""
    if not lists:
        return []
    return list(set(np.concatenate([c.product_ids for c in lists]).tolist()))


def merge(
    lists: Sequence[Candidates], quotas: Mapping[int, int], limit: int, allowed: Sequence[str]
) -> Candidates:
    """Dedupe (first list wins, first anchor kept), keep ``allowed`` products, apply quotas,
    interleave, cut."""
    lists = [c for c in lists if len(c)]
    if not lists or limit <= 0:
        return Candidates.of(0, np.empty(0, object), np.empty(0, np.float32))
    ids = np.concatenate([c.product_ids for c in lists])
    sources = np.concatenate([c.sources for c in lists])
    allowed_set = set(allowed)  # np.isin on object arrays sorts them: far slower
    keep = np.fromiter((p in allowed_set for p in ids), dtype=bool, count=len(ids))
    first = first_occurrences(ids)
    keep &= first

    segment = np.repeat(np.arange(len(lists)), [len(c) for c in lists])
    starts: NDArray[np.int64] = np.cumsum(keep) - keep  # kept entries before each position
    segment_start = np.concatenate([[0], np.cumsum([len(c) for c in lists])[:-1]])
    rank: NDArray[np.int64] = starts - starts[segment_start][segment]
    quota = np.array([max(quotas.get(int(c.sources[0]), 0), 0) for c in lists])[segment]
    keep &= rank < quota

    chosen = np.flatnonzero(keep)
    order = chosen[np.argsort(rank[chosen] / quota[chosen], kind="stable")][:limit]
    return Candidates(
        ids[order],
        np.concatenate([c.scores for c in lists])[order],
        sources[order],
        _first_anchors(ids, np.concatenate([c.anchors for c in lists]), ~first, order),
    )


def _first_anchors(
    ids: NDArray[Any], anchors: NDArray[Any], repeated: NDArray[np.bool_], order: NDArray[Any]
) -> NDArray[Any]:
    """The anchors of the entries at ``order``; one without (ANN) takes the anchor of the
    first ``repeated`` entry (a later source's proposal of the same product) that has one.
    ``dict(zip())`` and ``map`` loop in C: tens of microseconds for hundreds of entries."""
    chosen: NDArray[Any] = anchors[order]
    missing = np.flatnonzero(chosen == "")
    proposals = np.flatnonzero(repeated)
    anchored = proposals[anchors[proposals] != ""][::-1]  # reversed: the first wins
    if len(missing) and len(anchored):
        first = dict(zip(ids[anchored].tolist(), anchors[anchored].tolist(), strict=True))
        chosen[missing] = list(map(first.get, ids[order[missing]].tolist(), repeat("")))
    return chosen
