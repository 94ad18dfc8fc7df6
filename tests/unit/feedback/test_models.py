"""ModelService's logic: Wilson intervals, flattened gate metrics, the version view, the
online metrics' order and default window, with a hand-written fake of its reads."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import pytest

from magpie.modelstore.registry import ModelVersion
from services.feedback import config
from services.feedback.models import (
    Check,
    ModelsService,
    OnlineCounts,
    Rate,
    RegistryRead,
    Verdict,
    flatten_metrics,
    version_order,
    version_views,
    wilson,
)

NOW = datetime.datetime(2025, 6, 1, 12, tzinfo=datetime.UTC)


# Expected: the roots of (k/n - p)^2 = z^2 p (1 - p) / n in p, solved with numpy.roots.
@pytest.mark.parametrize(
    ("successes", "trials", "expected"),
    [
        (0, 0, (0.0, 0.0, 0.0)),
        (5, 10, (0.5, 0.236593, 0.763407)),
        (1, 10, (0.1, 0.017876, 0.404150)),
        (0, 100, (0.0, 0.0, 0.036993)),
        (100, 100, (1.0, 0.963007, 1.0)),
    ],
)
def test_wilson_interval_known_values(
    successes: int, trials: int, expected: tuple[float, float, float]
) -> None:
    rate = wilson(successes, trials)

    assert (rate.value, rate.low, rate.high) == pytest.approx(expected, abs=1e-6)


def test_wilson_caps_more_successes_than_trials_at_the_trials() -> None:
    assert wilson(7, 5) == wilson(5, 5)
    assert wilson(7, 5).value == 1.0
    assert wilson(3, 0) == Rate(0.0, 0.0, 0.0)


def test_wilson_interval_holds_the_rate_and_narrows_with_more_trials() -> None:
    small, large = wilson(30, 100), wilson(3000, 10000)

    assert small.low < 0.3 < small.high
    assert large.low < 0.3 < large.high
    assert large.high - large.low < small.high - small.low


def test_flatten_keeps_numeric_leaves_by_dotted_path() -> None:
    metrics = {
        "holdout_users": 240,
        "candidate": {"NDCG@10": 0.31, "HR@10": 0.5, "per_k": {"5": 0.2}},
        "champion_trained_on_holdout": True,
        "ranker_p50_ms": 1.5,
        "note": "text",
        "curve": [0.1, 0.2],
        "empty": {},
    }

    assert flatten_metrics(metrics) == {
        "holdout_users": 240.0,
        "candidate.NDCG@10": 0.31,
        "candidate.HR@10": 0.5,
        "candidate.per_k.5": 0.2,
        "ranker_p50_ms": 1.5,
    }


def _version(version: int, **fields: object) -> ModelVersion:
    values: dict[str, object] = {
        "model_name": "m",
        "version": version,
        "status": "candidate",
        "metrics": {},
        "artifact_uri": f"/a/{version}",
        "created_at": NOW,
        **fields,
    }
    return ModelVersion(**values)  # type: ignore[arg-type]


def test_versions_carry_their_aliases_metrics_verdict_and_run() -> None:
    verdict = {
        "accepted": False,
        "reason": "rejected: latency",
        "checks": [
            {"check": "baselines", "passed": True, "reason": "NDCG@10 0.3 >= 0.2"},
            {"check": "latency", "passed": False, "reason": "p50 9 ms (budget 5 ms)"},
        ],
        "metrics": {"ignored": 1},
    }
    rows = [
        _version(3, status="rejected", metrics={"candidate": {"NDCG@10": 0.3}}, verdict=verdict),
        _version(2, run_id="6f1c"),
        _version(1),
    ]

    views = version_views(rows, {"staged": 1, "champion": 2, "previous": 1})

    assert [(v.version, v.aliases) for v in views] == [
        (3, ()),
        (2, ("champion",)),
        (1, ("previous", "staged")),
    ]
    assert views[0].offline_metrics == {"candidate.NDCG@10": 0.3}
    assert views[0].verdict == Verdict(
        False,
        "rejected: latency",
        (
            Check("baselines", True, "NDCG@10 0.3 >= 0.2"),
            Check("latency", False, "p50 9 ms (budget 5 ms)"),
        ),
    )
    assert views[1].verdict is None
    assert (views[1].run_id, views[2].run_id) == ("6f1c", "")


def test_versions_named_by_integers_sort_numerically_then_others_as_text() -> None:
    names = ["b", "10", "2", "a", "1", "²"]

    assert sorted(names, key=version_order) == ["1", "2", "10", "a", "b", "²"]


class Reads:
    def __init__(self, counts: list[OnlineCounts]) -> None:
        self.counts = counts
        self.asked: list[tuple[datetime.datetime, list[str]]] = []

    async def registry(self, model_name: str, limit: int) -> RegistryRead:
        return RegistryRead([_version(v) for v in range(limit, 0, -1)], {"champion": 1}, [])

    async def online_counts(
        self, since: datetime.datetime, model_versions: Sequence[str]
    ) -> list[OnlineCounts]:
        self.asked.append((since, list(model_versions)))
        return self.counts


async def test_online_metrics_default_window_dedup_and_order() -> None:
    reads = Reads([OnlineCounts(v, 10, 1, 0, 0) for v in ("10", "x", "9")])
    service = ModelsService(reads, clock=lambda: NOW)

    answered = await service.online(None, ["9", "10", "9"])
    since = NOW - datetime.timedelta(days=3)
    await service.online(since, [])

    assert [c.model_version for c in answered] == ["9", "10", "x"]
    assert reads.asked == [
        (NOW - datetime.timedelta(days=config.ONLINE_METRICS_DAYS), ["9", "10"]),
        (since, []),
    ]
    assert answered[0].click_through_rate == wilson(1, 10)


async def test_history_names_the_model_and_assembles_its_versions() -> None:
    history = await ModelsService(Reads([])).history("m", 3)

    assert history.model_name == "m"
    assert [(v.version, v.aliases) for v in history.versions] == [
        (3, ()),
        (2, ()),
        (1, ("champion",)),
    ]
