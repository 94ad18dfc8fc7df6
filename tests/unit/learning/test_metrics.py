import math

import numpy as np

from magpie.learning.metrics import coverage, hit_rate, mrr, ndcg, summarize, target_ranks, top_k
from magpie.learning.protocol import mask_seen, two_stage


def test_target_ranks_counts_higher_scores_and_breaks_ties_by_index() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.5], [0.3, 0.3, 0.3, 0.3]])
    ranks = target_ranks(scores, np.array([3, 2]))
    assert ranks.tolist() == [2, 2]


def test_metrics_on_hand_computed_ranks() -> None:
    ranks = np.array([0, 1, 4, 12, 30])
    assert hit_rate(ranks, 10) == 3 / 5
    assert hit_rate(ranks, 20) == 4 / 5
    expected_ndcg = (1.0 + 1 / math.log2(3) + 1 / math.log2(6)) / 5
    assert math.isclose(ndcg(ranks, 10), expected_ndcg)
    assert math.isclose(mrr(ranks, 10), (1.0 + 0.5 + 0.2) / 5)


def test_coverage_counts_distinct_items() -> None:
    assert coverage(np.array([[2, 3], [3, 4]]), catalog_size=6) == 0.5


def test_top_k_is_stable_on_ties() -> None:
    assert top_k(np.array([[1.0, 2.0, 2.0, 0.0]]), 3).tolist() == [[1, 2, 0]]


def test_masked_history_never_outranks_the_target() -> None:
    scores = np.array([[0.0, 0.0, 9.0, 8.0, 1.0, 2.0]])
    masked = mask_seen(scores, [(2, 3)])
    metrics = summarize(masked, np.array([5]), np.array([True]), catalog_size=4)
    assert metrics["HR@10"] == 1.0
    assert metrics["NDCG@10"] == 1.0
    assert np.isneginf(masked[0, [0, 1, 2, 3]]).all()


def test_two_stage_reorders_the_top_n_and_keeps_the_rest_in_first_stage_order() -> None:
    first = mask_seen(np.array([[0.0, 0.0, 5.0, 4.0, 3.0, 2.0, 1.0]]), [()])

    def reverse(candidates: np.ndarray) -> np.ndarray:
        return -first[np.arange(len(candidates))[:, None], candidates]

    combined = two_stage(first, reverse, n=3)
    assert top_k(combined, 5).tolist() == [[4, 3, 2, 5, 6]]
    assert np.isneginf(combined[0, :2]).all()


def test_two_stage_never_unmasks_items() -> None:
    first = mask_seen(np.array([[0.0, 0.0, 5.0, 4.0]]), [(3,)])
    combined = two_stage(first, lambda c: np.zeros(c.shape), n=3)
    assert np.isneginf(combined[0, 3])
    assert np.isfinite(combined[0, 2])
