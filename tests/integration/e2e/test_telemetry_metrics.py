"""A real Prometheus (Debian's package) scrapes the running platform: every process's series
exist with sane values, latency histograms carry trace-id exemplars, and every dashboard
query and every alert expression parses and (the dashboard's) returns data."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import psycopg2
import pytest
import yaml

from magpie.retraining import runs
from magpie.v1 import (
    common_pb2,
    feedback_pb2,
    feedback_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
)
from tests.integration.e2e.conftest import Platform
from tests.integration.e2e.workers import started, worker_env
from tests.support import REPO, free_port

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        PROMETHEUS is None,
        reason="PROMETHEUS MISSING: install Debian's prometheus package "
        "(tools/install-test-packages)",
    ),
]
FILES = REPO / "helm" / "magpie" / "files"


def _get(base: str, path: str, **query: str) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = json.loads(reply.read())
    assert body["status"] == "success", body
    return body["data"]


@pytest.fixture(scope="module")
def prometheus(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Platform]]:
    work = tmp_path_factory.mktemp("prometheus")
    layout = platform.local.layout
    targets = {
        f"magpie-{name}": [f"127.0.0.1:{port}"] for name, port in layout.metrics_ports.items()
    }
    targets["magpie-triton"] = [f"127.0.0.1:{layout.triton.metrics}"]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": addresses}]}
            for job, addresses in targets.items()
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    assert PROMETHEUS is not None
    env = worker_env(platform, work)
    env["MAGPIE_METRICS_PORT"] = str(layout.metrics_ports["worker"])
    with (
        (work / "prometheus.log").open("wb") as log,
        started("worker", env, work),
        subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--enable-feature=exemplar-storage",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        ) as process,
    ):
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_all_up(base, len(targets))
            yield base, platform
        finally:
            process.terminate()
            process.wait(timeout=20)


def _wait_all_up(base: str, expected: int) -> None:
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        try:
            up = _get(base, "/api/v1/query", query="sum(up)")["result"]
            if up and float(up[0]["value"][1]) == expected:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"not every target was up: {_get(base, '/api/v1/targets')}")


def _traffic(platform: Platform) -> None:
    users = [u.user_id for u in platform.world.loaded.users[:20]]
    with grpc.insecure_channel(platform.settings.ranking_addr) as channel:
        ranking = ranking_pb2_grpc.RankingServiceStub(channel)
        for user in users:
            ranking.Recommend(ranking_pb2.RecommendRequest(user_id=user, k=5), timeout=5)
        with pytest.raises(grpc.RpcError):  # a refused call: the error series exist too
            ranking.Recommend(ranking_pb2.RecommendRequest(user_id=""), timeout=5)
    with grpc.insecure_channel(platform.settings.feedback_addr) as channel:
        feedback_pb2_grpc.FeedbackServiceStub(channel).RecordEvents(
            feedback_pb2.RecordEventsRequest(
                events=[
                    feedback_pb2.Event(
                        event_id=f"metrics-{user}-{time.time_ns()}",
                        user_id=user,
                        product_id=platform.world.loaded.items[0].item_id,
                        event_type=common_pb2.EVENT_TYPE_CLICK,
                    )
                    for user in users
                ]
            ),
            timeout=10,
        )


def _ensure_a_verdict(platform: Platform) -> None:
    """The gate-verdict and stage-duration series exist once a run completed a stage and was
    judged; earlier e2e tests judge runs, and alone this test records one run itself (its
    snapshot stage done, then rejected: state written by the run API, not a stand-in)."""
    with psycopg2.connect(platform.settings.database_url) as conn:
        judged = any(r.verdict for r in runs.latest_runs(conn, platform.settings.model_name, 100))
        if not judged:
            run, _ = runs.start_run(conn, platform.settings.model_name, "manual")
            runs.record_attempt(conn, run.run_id, "snapshot", "metrics-test")
            runs.record_attempt(conn, run.run_id, "snapshot", "metrics-test", outcome="done")
            runs.finish(conn, run.run_id, "rejected", {"verdict": {"accepted": False}})
    conn.close()


def _series(base: str, query: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = _get(base, "/api/v1/query", query=query)["result"]
    return result


def test_every_process_exposes_its_series_with_sane_values(
    prometheus: tuple[str, Platform],
) -> None:
    base, platform = prometheus
    _ensure_a_verdict(platform)
    _traffic(platform)
    time.sleep(3)  # three scrapes: rates need two samples after the traffic

    recommends = _series(
        base,
        'sum(magpie_rpc_requests_total{job="magpie-ranking",'
        'method="/magpie.v1.RankingService/Recommend",code="OK"})',
    )
    latency = _series(
        base,
        "histogram_quantile(0.5, sum by (le)"
        ' (magpie_rpc_duration_seconds_bucket{job="magpie-ranking"}))',
    )
    hops = {s["metric"]["hop"] for s in _series(base, "magpie_hop_duration_seconds_count")}
    sources = {s["metric"]["source"] for s in _series(base, "magpie_candidates_count")}
    versions = _series(base, "magpie_served_model_version")
    accepted = _series(base, 'magpie_feedback_events_total{outcome="accepted"}')
    runs_by_status = _series(base, "magpie_retrain_runs")
    triton = _series(base, "nv_inference_request_success")

    assert float(recommends[0]["value"][1]) >= 20
    assert 0.0 < float(latency[0]["value"][1]) < 1.0  # seconds: a Recommend is ms, not s
    assert {"profiles", "retrieval", "catalog", "triton"} <= hops
    assert {"ann", "covisitation", "content", "popular"} <= sources
    assert {s["metric"]["job"] for s in versions} == {"magpie-ranking", "magpie-retrieval"}
    assert all(float(s["value"][1]) >= 1 for s in versions)
    assert float(accepted[0]["value"][1]) >= 20
    assert any(s["metric"]["status"] == "succeeded" for s in runs_by_status)
    assert triton and float(triton[0]["value"][1]) > 0


def test_latency_histograms_carry_trace_id_exemplars(prometheus: tuple[str, Platform]) -> None:
    base, platform = prometheus
    _traffic(platform)
    time.sleep(2)
    now = time.time()

    found = _get(
        base,
        "/api/v1/query_exemplars",
        query='magpie_rpc_duration_seconds_bucket{job="magpie-ranking"}',
        start=str(now - 600),
        end=str(now),
    )

    trace_ids = [e["labels"]["trace_id"] for series in found for e in series["exemplars"]]
    assert trace_ids and all(len(t) == 32 for t in trace_ids)
    assert set(trace_ids) & {span.trace_id for span in platform.traces.spans}


def test_every_dashboard_query_returns_data_and_every_alert_parses(
    prometheus: tuple[str, Platform],
) -> None:
    base, platform = prometheus
    _ensure_a_verdict(platform)
    _traffic(platform)
    time.sleep(3)
    dashboard = json.loads((FILES / "dashboard.json").read_text())
    rules = yaml.safe_load((FILES / "alerts.yaml").read_text())

    empty = [
        panel["title"]
        for panel in dashboard["panels"]
        for target in panel["targets"]
        if not _series(base, target["expr"])
    ]
    for group in rules["groups"]:
        for rule in group["rules"]:
            _series(base, rule["expr"])  # raises unless Prometheus parses and evaluates it

    assert empty == []
