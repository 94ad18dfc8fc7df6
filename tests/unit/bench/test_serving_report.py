"""How the serving benchmark turns measured runs into its report: the interleaving of the
two trees, medians over rounds, the CPU ratio against the baseline, capacity per core and
the JSON it writes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tools.bench.serving import (
    capacity_rps_per_core,
    cpu_ratios,
    headline_rps,
    interleaving,
    median_levels,
    summarise,
)


def _run(
    rps: int, total: float, p99: float = 30.0, degraded: int = 0, round_: int = 0
) -> dict[str, Any]:
    """One measured level as the load generator reports it; ranking is 40% of the CPU."""
    return {
        "round": round_,
        "rps_offered": rps,
        "rps_achieved": float(rps),
        "p50_ms": p99 / 2,
        "p95_ms": p99 * 0.9,
        "p99_ms": p99,
        "errors": 0,
        "degraded": degraded,
        "requests": rps * 10,
        "cpu_ms_per_request": {
            "ranking": total * 0.4,
            "retrieval": total * 0.5,
            "load generator": total * 0.1,
            "total": total,
        },
        "machine_busy_share": 0.5,
        "rss_mb": {"ranking": 100.0, "retrieval": 200.0, "load generator": 50.0},
    }


def _unloaded() -> dict[str, Any]:
    return {
        "health_rtt_p50_ms": 0.5,
        "health_cpu_us_per_call": {"server": 300, "client": 200},
        "recommend_unloaded_p50_ms": 20.0,
        "p50_ratio_to_health_rtt": 40.0,
        "hops_p50_ms": {"profiles.GetProfile": 1.0},
    }


def test_every_level_runs_against_both_trees_in_an_order_that_alternates_per_round() -> None:
    order = interleaving(3, [25, 100], ["current", "baseline"])
    assert order == [
        (0, 25, "current"),
        (0, 25, "baseline"),
        (0, 100, "current"),
        (0, 100, "baseline"),
        (1, 25, "baseline"),
        (1, 25, "current"),
        (1, 100, "baseline"),
        (1, 100, "current"),
        (2, 25, "current"),
        (2, 25, "baseline"),
        (2, 100, "current"),
        (2, 100, "baseline"),
    ]


def test_levels_take_medians_over_rounds_and_sum_the_counts() -> None:
    runs = [
        _run(25, 10.0, round_=0),
        _run(100, 8.0, p99=40.0, degraded=1, round_=0),
        _run(25, 30.0, round_=1),
        _run(100, 6.0, p99=60.0, degraded=2, round_=1),
        _run(25, 12.0, round_=2),
        _run(100, 7.0, p99=45.0, round_=2),
    ]
    low, high = median_levels(runs)
    assert low["rps_offered"] == 25 and high["rps_offered"] == 100
    assert low["cpu_ms_per_request"]["total"] == 12.0  # not the mean (17.33)
    assert low["cpu_ms_per_request"]["ranking"] == pytest.approx(4.8)
    assert high["p99_ms"] == 45.0
    assert (high["degraded"], high["requests"], high["rounds"]) == (3, 3000, 3)
    assert high["rss_mb"] == {"ranking": 100.0, "retrieval": 200.0, "load generator": 50.0}


def test_the_ratio_is_current_over_baseline_per_level_and_the_headline_is_at_100() -> None:
    current = median_levels([_run(25, 10.0), _run(100, 6.0)])
    baseline = median_levels([_run(25, 25.0), _run(100, 16.0)])
    assert cpu_ratios(current, baseline) == {"25": 0.4, "100": 0.375}
    assert headline_rps(current) == 100
    assert headline_rps(median_levels([_run(25, 1.0), _run(50, 1.0)])) == 50


def test_capacity_is_1000_over_the_cpu_at_the_highest_level_meeting_the_latency() -> None:
    levels = median_levels(
        [_run(25, 20.0), _run(50, 10.0), _run(75, 8.0, degraded=1), _run(100, 5.0, p99=80.0)]
    )
    at, per_core = capacity_rps_per_core(levels)
    assert at == 50  # 75 answered degraded, 100 too slow
    assert per_core == {"ranking": 250.0, "retrieval": 200.0}  # 1000 / 4 ms, 1000 / 5 ms
    assert capacity_rps_per_core(median_levels([_run(25, 10.0, p99=50.0)])) == (None, {})


def test_the_report_has_both_trees_figures_and_is_json() -> None:
    measured = {
        "current": {**_unloaded(), "runs": [_run(50, 10.0), _run(100, 8.0, p99=45.0)]},
        "baseline": {
            **_unloaded(),
            "runs": [_run(50, 20.0), _run(100, 16.0, p99=90.0, degraded=5)],
        },
    }
    report = json.loads(json.dumps(summarise(measured, {"ref": "HEAD", "commit": "abc"})))
    assert report["baseline"]["ref"] == "HEAD"
    assert report["baseline"]["commit"] == "abc"
    assert report["baseline"]["cpu_ms_per_request"]["total"] == 16.0
    assert report["baseline"]["p99_ms_at_100"] == 90.0
    assert report["cpu_ratio_vs_baseline"] == 0.5
    assert report["cpu_ratio_at_rps"] == 100
    assert [level["rps_offered"] for level in report["levels"]] == [50, 100]
    assert report["recommend_unloaded_p50_ms"] == 20.0
    assert report["capacity_at_rps"] == 100
    assert set(report["capacity_rps_per_core"]) == {"ranking", "retrieval"}
    assert len(report["runs"]["current"]) == len(report["runs"]["baseline"]) == 2


def test_without_a_baseline_the_report_has_no_comparison() -> None:
    report = summarise({"current": {**_unloaded(), "runs": [_run(25, 10.0)]}})
    assert "baseline" not in report and "cpu_ratio_vs_baseline" not in report
    assert report["levels"][0]["cpu_ms_per_request"]["total"] == 10.0
