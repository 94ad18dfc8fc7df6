"""The gate's decision on measured numbers, and the time-forward split it measures on."""

from __future__ import annotations

from typing import Any

import pytest

from magpie.datasets.schema import Dataset, EventKind, Interaction, Item
from magpie.retraining.gate import MIN_USERS, decide, time_split


def _metrics(**overrides: Any) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "holdout_users": 200,
        "candidate": {"NDCG@10": 0.10},
        "candidate_fp32": {"NDCG@10": 0.10},
        "popularity": {"NDCG@10": 0.03},
        "covisitation": {"NDCG@10": 0.08},
        "champion": {"NDCG@10": 0.10},
        "ranker_p50_ms": 2.0,
    }
    metrics.update(overrides)
    return metrics


def _decide(metrics: dict[str, Any]) -> dict[str, Any]:
    return decide(metrics, margin=0.02, int8_drift=0.02, ranker_ms=25.0)


def test_a_candidate_as_good_as_the_champion_and_above_the_baselines_is_accepted() -> None:
    verdict = _decide(_metrics(candidate={"NDCG@10": 0.099}, candidate_fp32={"NDCG@10": 0.0995}))

    assert verdict["accepted"]
    assert [c["check"] for c in verdict["checks"]] == ["baselines", "champion", "int8", "latency"]
    assert verdict["reason"].startswith("accepted: NDCG@10 0.0990 >= the best baseline")
    assert "(-1.0%; at most 2% worse is accepted)" in verdict["reason"]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"covisitation": {"NDCG@10": 0.11}}, "NDCG@10 0.1000 < the best baseline (covisitation)"),
        ({"champion": {"NDCG@10": 0.103}}, "vs the champion's 0.1030 (-2.9%"),
        ({"candidate_fp32": {"NDCG@10": 0.11}}, "INT8 ranker loses 9.09% of the FP32 NDCG@10"),
        ({"ranker_p50_ms": 30.0}, "INT8 ranker p50 30.00 ms for 500 candidates (budget 25 ms)"),
    ],
)
def test_each_failed_check_rejects_and_says_why(overrides: dict[str, Any], named: str) -> None:
    verdict = _decide(_metrics(**overrides))

    assert not verdict["accepted"]
    assert verdict["reason"].startswith("rejected: ") and named in verdict["reason"]
    assert sum(not c["passed"] for c in verdict["checks"]) == 1


def test_a_champion_trained_on_the_holdout_is_not_compared() -> None:
    metrics = _metrics(champion_trained_on_holdout=True)
    del metrics["champion"]

    verdict = _decide(metrics)

    assert verdict["accepted"]
    assert "the champion trained on events inside this holdout" in verdict["reason"]


def test_a_holdout_too_small_to_tell_rejects() -> None:
    verdict = _decide({"holdout_users": MIN_USERS - 1})

    assert not verdict["accepted"]
    assert f"fewer than {MIN_USERS}" in verdict["reason"]


def _event(user: str, item: str, at: float) -> Interaction:
    return Interaction(user, item, EventKind.CLICK, at)


def test_the_holdout_is_each_users_first_new_item_after_the_cutoff() -> None:
    items = [Item(f"p{i}", f"t{i}", "", ("A",)) for i in range(5)]
    events = [
        _event("u1", "p0", 1.0),
        _event("u1", "p1", 2.0),
        _event("u1", "p1", 11.0),  # seen before the cutoff: not a target
        _event("u1", "p2", 12.0),
        _event("u1", "p3", 13.0),
        _event("u2", "p4", 11.0),  # no history before the cutoff: not evaluated
        _event("u3", "p0", 3.0),  # nothing after the cutoff: not evaluated
    ]

    training, holdout = time_split(Dataset("d", items, [], events), cutoff=10.0)

    assert [e.timestamp for e in training.interactions] == [1.0, 2.0, 3.0]
    assert holdout.histories == [["p0", "p1"]]
    assert holdout.targets == ["p2"]
    assert (holdout.target_times, holdout.last_times) == ([12.0], [2.0])
    assert holdout.catalog == ("p0", "p1", "p2", "p3", "p4")
