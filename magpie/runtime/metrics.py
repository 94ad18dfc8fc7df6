"""Prometheus metrics of every Magpie process, declared once, served on /metrics.

Names follow Prometheus conventions (base units, ``_total`` counters); every latency
histogram carries the trace id of a sampled request as an exemplar (OpenMetrics), so a
slow bucket on a dashboard links to one of its traces. What lives in PostgreSQL (the
retraining runs, the consumer's lag) is read when scraped by collectors of the processes
that own it, which also keeps the Celery worker's prefork children out of the picture.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from magpie.runtime.settings import SERVICE_PORTS, Settings
from magpie.runtime.telemetry import current_trace_id

__all__ = [
    "ANSWERS",
    "CACHE_REQUESTS",
    "CANDIDATES",
    "CONSUMER_LAG",
    "DEGRADED",
    "FEEDBACK_EVENTS",
    "HOP_DURATION",
    "RPC_DURATION",
    "RPC_IN_FLIGHT",
    "RPC_REQUESTS",
    "SERVED_MODEL_VERSION",
    "WORKER_METRICS_PORT",
    "FunctionCollector",
    "observe",
    "serve_metrics",
    "timed_hop",
]

logger = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

RPC_REQUESTS = Counter(
    "magpie_rpc_requests", "RPCs answered, by method and status code", ["method", "code"]
)
RPC_DURATION = Histogram(
    "magpie_rpc_duration_seconds", "Time to answer an RPC", ["method"], buckets=_LATENCY_BUCKETS
)
RPC_IN_FLIGHT = Gauge("magpie_rpc_in_flight", "RPCs being answered now (an HPA signal)")
HOP_DURATION = Histogram(
    "magpie_hop_duration_seconds",
    "Time of one downstream call of a Recommend (profiles, retrieval, catalog, triton)",
    ["hop", "outcome"],
    buckets=_LATENCY_BUCKETS,
)
CANDIDATES = Histogram(
    "magpie_candidates",
    "Candidates of one Retrieve, by source",
    ["source"],
    buckets=(0, 10, 25, 50, 100, 200, 300, 500, 1000, 2000),
)
ANSWERS = Counter("magpie_recommend_answers", "Recommend and Rank answers", ["method"])
DEGRADED = Counter(
    "magpie_degraded_answers",
    "Answers degraded, by reason (one answer may count twice)",
    ["reason"],
)
SERVED_MODEL_VERSION = Gauge(
    "magpie_served_model_version", "The model version a replica serves", ["service"]
)
"""Set by the processes that load models (retrieval, ranking): absent elsewhere."""
CACHE_REQUESTS = Counter(
    "magpie_cache_requests", "Cache lookups by namespace and result", ["namespace", "result"]
)
FEEDBACK_EVENTS = Counter(
    "magpie_feedback_events", "Events received by the feedback service, by outcome", ["outcome"]
)
CONSUMER_LAG = Gauge(
    "magpie_consumer_lag_events",
    "Stored events not yet folded into features (events after the consumer's checkpoint)",
)
WORKER_METRICS_PORT = 51060


def observe(histogram: Histogram, seconds: float, **labels: str) -> None:
    """Records a latency, with the current trace id as its exemplar when there is one."""
    child = histogram.labels(**labels) if labels else histogram
    trace_id = current_trace_id()
    child.observe(seconds, exemplar={"trace_id": trace_id} if trace_id else None)


@contextlib.contextmanager
def timed_hop(hop: str) -> Iterator[None]:
    """Times one downstream call as ``magpie_hop_duration_seconds{hop, outcome}``."""
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        observe(HOP_DURATION, time.perf_counter() - started, hop=hop, outcome=outcome)


class FunctionCollector(Collector):
    """Gauges computed when scraped (from PostgreSQL, the broker): ``read`` returns
    (name, help, {label tuple: value}, label names)."""

    def __init__(
        self,
        read: Callable[[], Iterable[tuple[str, str, dict[tuple[str, ...], float], list[str]]]],
    ) -> None:
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            families = list(self._read())
        except Exception as error:  # noqa: BLE001 - a scrape must not fail the process
            logger.warning("metrics collection failed: %s", error)
            return
        for name, text, values, labels in families:
            family = GaugeMetricFamily(name, text, labels=labels)
            for label_values, value in values.items():
                family.add_metric(list(label_values), value)
            yield family


def serve_metrics(process: str, settings: Settings) -> int | None:
    """Starts /metrics for ``process`` (a service name or "worker"); returns the port."""
    if not settings.metrics_enabled:
        return None
    port = settings.metrics_port
    if port is None:  # the same defaults as magpie.platform.local.PlatformLayout
        port = SERVICE_PORTS[process] + 1000 if process in SERVICE_PORTS else WORKER_METRICS_PORT
    server, _ = start_http_server(port, addr=settings.host, registry=REGISTRY)
    bound = int(server.server_port)
    logger.info("metrics on %s:%d/metrics", settings.host, bound)
    return bound
