"""Tracing for every Magpie process, set up once by its entry point.

Configuration is OpenTelemetry's own, from the standard ``OTEL_*`` variables:

* ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) turns tracing
  on; without it no tracer provider is installed and every span is the API's no-op, so a
  process pays nothing beyond that. ``OTEL_EXPORTER_OTLP_PROTOCOL`` is ``grpc`` (default)
  or ``http/protobuf``.
* ``OTEL_SERVICE_NAME`` (default: the process's name, e.g. ``ranking``) and
  ``OTEL_RESOURCE_ATTRIBUTES`` (``deployment.environment``, ``k8s.pod.name`` and
  ``k8s.node.name`` from the downward API in the Helm chart) describe the process.
* ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``; unset, the sampler is parent-based
  with a ratio of ``DEFAULT_SAMPLE_RATIO`` for new traces.
* ``OTEL_BSP_*`` tune the batch span processor.

What is instrumented, and how (``instrument``): gRPC servers and clients through the
contrib interceptors (added by :mod:`magpie.runtime.server` and
:mod:`magpie.runtime.clients` when tracing is on); psycopg2 per connection
(``instrument_connection``: the global patch breaks ``register_type``, contrib #143);
Redis with only the key prefix recorded (the contrib instrumentation already replaces
arguments by ``?``); Celery in the worker process (``worker_process_init``) and on the
producers. Triton calls carry ``traceparent`` in their gRPC metadata
(:mod:`magpie.modelstore.client`), so Triton's own spans join the trace.

Span attribute names are declared here once, and a user id only ever appears hashed
(:func:`hashed_user`).
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace

from magpie.runtime.settings import Settings

__all__ = [
    "ATTR",
    "DEFAULT_SAMPLE_RATIO",
    "current_trace_id",
    "hashed_user",
    "instrument_connection",
    "setup_tracing",
    "shutdown_tracing",
    "tracer",
    "tracing_enabled",
    "user_digest",
]

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATIO = 0.1
"""Share of new traces sampled when OTEL_TRACES_SAMPLER is unset (parent-based: a sampled
caller's trace is always followed)."""


class ATTR:
    """Span attribute names Magpie sets, declared once."""

    USER = "magpie.user.hash"
    """HMAC of the user id (:func:`hashed_user`); never the raw id."""
    K = "magpie.recommend.k"
    RECOMMENDATION_ID = "magpie.recommendation.id"
    """On the root span of a Recommend or Rank: a caller holding the id finds the trace."""
    MODEL_VERSION = "magpie.model.version"
    DEGRADATIONS = "magpie.degradations"
    CANDIDATES = "magpie.candidates"
    """Candidates in total; per source in ``magpie.candidates.<source>``."""
    CACHE_HIT = "magpie.cache.hit"
    CACHE_KEY_PREFIX = "magpie.cache.key_prefix"
    BATCH_SIZE = "magpie.batch.size"
    RUN_ID = "magpie.retrain.run_id"
    STAGE = "magpie.retrain.stage"
    GATE_ACCEPTED = "magpie.gate.accepted"
    GATE_REASON = "magpie.gate.reason"

    @staticmethod
    def candidates_from(source: str) -> str:
        return f"{ATTR.CANDIDATES}.{source}"


_enabled = False
_DEFAULT_USER_KEY = b"magpie-default-user-hash-key"
_user_key = _DEFAULT_USER_KEY


def tracing_enabled() -> bool:
    """Whether this process exports spans (instrument only then: no cost otherwise)."""
    return _enabled


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def hashed_user(user_id: str) -> str:
    """A stable pseudonym of a user id for spans and logs: HMAC-SHA256 under
    ``MAGPIE_USER_HASH_KEY``, 16 hex characters."""
    return hmac.new(_user_key, user_id.encode(), hashlib.sha256).hexdigest()[:16]


def user_digest(user_id: str, settings: Settings) -> str:
    """HMAC-SHA256 of a user id under ``settings.user_hash_key`` (the built-in key when
    empty), 64 hex characters: how Magpie keeps track of a user it must not hold the id of
    (deleted users). Spans and logs use its first 16 characters (:func:`hashed_user`)."""
    key = settings.user_hash_key.encode() if settings.user_hash_key else _DEFAULT_USER_KEY
    return hmac.digest(key, user_id.encode(), "sha256").hex()


def current_trace_id() -> str:
    """The active span's trace id (32 hex), or "" outside a recorded span."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


def _exporter(env: Mapping[str, str]) -> Any:
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    return OTLPSpanExporter()


def setup_tracing(service: str, settings: Settings, env: Mapping[str, str] | None = None) -> bool:
    """Installs the tracer provider and the instrumentations this process uses, if an OTLP
    endpoint is configured; returns whether tracing is on. Call once, first thing."""
    global _enabled, _user_key
    env = os.environ if env is None else env
    if settings.user_hash_key:
        _user_key = settings.user_hash_key.encode()
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not endpoint or env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from magpie.runtime.machine import package_version

    resource = Resource.create(
        {SERVICE_NAME: env.get("OTEL_SERVICE_NAME", service), SERVICE_VERSION: package_version()}
    )
    sampler = (
        None
        if env.get("OTEL_TRACES_SAMPLER")
        else ParentBased(TraceIdRatioBased(DEFAULT_SAMPLE_RATIO))
    )
    provider = TracerProvider(resource=resource, sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(_exporter(env)))
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)  # flush what is batched on a clean exit
    _instrument_redis()
    _enabled = True
    logger.info("tracing to %s", endpoint)
    return True


def shutdown_tracing() -> None:
    """Flushes and stops the provider (a Celery child before it exits)."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is not None:
        shutdown()


def instrument_connection(conn: Any) -> Any:
    """A psycopg2 connection whose queries are spans (when tracing is on)."""
    if not _enabled:
        return conn
    from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor

    return Psycopg2Instrumentor().instrument_connection(conn)


def _key_prefix(span: Any, instance: Any, args: Any, kwargs: Any) -> None:
    """Records the Magpie key namespace of a Redis command (``magpie:<db>:<namespace>:``),
    never a key's entity id nor a value."""
    for arg in args[1:]:
        text = arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)
        if text.startswith("magpie:"):
            span.set_attribute(ATTR.CACHE_KEY_PREFIX, text.rsplit(":", 1)[0] + ":")
            return


def _instrument_redis() -> None:
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    instrumentor = RedisInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(request_hook=_key_prefix)
