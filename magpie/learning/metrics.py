"""Full-ranking metrics. Ranks are 0-based; ties between scores break by item index."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["coverage", "hit_rate", "mrr", "ndcg", "summarize", "target_ranks", "top_k"]


def target_ranks(scores: NDArray[Any], targets: NDArray[Any]) -> NDArray[Any]:
    """int64 [users]: position of each target in its row sorted by descending score."""
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets][:, None]
    lower_index = np.arange(scores.shape[1])[None, :] < targets[:, None]
    ahead = (scores > target_scores) | ((scores == target_scores) & lower_index)
    ranks: NDArray[Any] = ahead.sum(axis=1).astype(np.int64)
    return ranks


def top_k(scores: NDArray[Any], k: int) -> NDArray[Any]:
    """int64 [users, k]: the best ``k`` item indices per row, ties by index."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def hit_rate(ranks: NDArray[Any], k: int) -> float:
    return float(np.mean(ranks < k)) if len(ranks) else 0.0


def ndcg(ranks: NDArray[Any], k: int) -> float:
    """NDCG@k with one relevant item: 1 / log2(rank + 2) inside the top k."""
    gains = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
    return float(np.mean(gains)) if len(ranks) else 0.0


def mrr(ranks: NDArray[Any], k: int) -> float:
    reciprocal = np.where(ranks < k, 1.0 / (ranks + 1.0), 0.0)
    return float(np.mean(reciprocal)) if len(ranks) else 0.0


def coverage(top_items: NDArray[Any], catalog_size: int) -> float:
    """Share of the catalog that appears in at least one user's top list."""
    return len(np.unique(top_items)) / catalog_size


def summarize(
    scores: NDArray[Any], targets: NDArray[Any], cold: NDArray[Any], catalog_size: int
) -> dict[str, float]:
    """The protocol's metrics for masked full-ranking ``scores`` [users, items]."""
    ranks = target_ranks(scores, targets)
    return {
        "HR@10": hit_rate(ranks, 10),
        "NDCG@10": ndcg(ranks, 10),
        "MRR@10": mrr(ranks, 10),
        "HR@20": hit_rate(ranks, 20),
        "NDCG@20": ndcg(ranks, 20),
        "coverage@10": coverage(top_k(scores, 10), catalog_size),
        "cold_HR@10": hit_rate(ranks[cold], 10),
        "cold_NDCG@10": ndcg(ranks[cold], 10),
        # Few cold targets ever reach a top 10; where the model places them says more.
        "cold_HR@100": hit_rate(ranks[cold], 100),
        "cold_median_rank": float(np.median(ranks[cold]) + 1) if cold.any() else 0.0,
        "cold_users": float(cold.sum()),
    }
