"""Typed settings for every Magpie process, read from `MAGPIE_*` environment variables.

One `Settings` object is built at start by the process's entry point and passed
down; nothing reads the environment after that. A `MAGPIE_*` variable that does
not name a field is an error (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "CONSOLE_PORT",
    "ENV_PREFIX",
    "SERVICE_PORTS",
    "TRITON_RANKER",
    "Settings",
    "load_settings",
]

ENV_PREFIX = "MAGPIE_"

SERVICE_PORTS: Mapping[str, int] = {
    "profiles": 50051,
    "catalog": 50052,
    "feedback": 50055,
    "retrieval": 50053,
    "ranking": 50054,
}
"""Every gRPC service and its default port, in the order a platform starts them (a
service's dependencies before it)."""
CONSOLE_PORT = 8088
"""Default HTTP port of the web console."""
TRITON_RANKER = "magpie_ranker"
"""Name of the ranker in the Triton model repository."""


def _local(service: str) -> str:
    return f"127.0.0.1:{SERVICE_PORTS[service]}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    database_url: str = "postgresql://postgres@127.0.0.1:5432/magpie"
    """libpq URL of the PostgreSQL database holding profiles, catalog, events and models."""
    db_pool_size: int = Field(default=8, ge=1, le=256)
    """Most open connections per process."""
    db_retry_seconds: float = Field(default=2.0, ge=0)
    """How long a database call keeps retrying a lost connection before UNAVAILABLE."""
    db_statement_timeout_ms: int = Field(default=2000, ge=0)
    """Longest a statement may run (PostgreSQL ``statement_timeout``; 0: no limit); a call
    whose gRPC deadline is nearer gets what is left of it instead."""
    db_lock_timeout_ms: int = Field(default=1000, ge=0)
    """Longest a statement waits for a lock held by another transaction (``lock_timeout``;
    0: no limit); then the call answers UNAVAILABLE and may be retried."""
    db_idle_in_transaction_timeout_ms: int = Field(default=10_000, ge=0)
    """PostgreSQL ends a session idle this long inside a transaction
    (``idle_in_transaction_session_timeout``; 0: never), releasing its locks."""
    db_keepalives_idle_seconds: int = Field(default=5, ge=0)
    """TCP keepalive: idle seconds before the first probe of a database connection (0: the OS
    default); with the next two, how soon a connection to a vanished server is dropped."""
    db_keepalives_interval_seconds: int = Field(default=2, ge=0)
    """TCP keepalive: seconds between unanswered probes (0: the OS default)."""
    db_keepalives_count: int = Field(default=3, ge=0)
    """TCP keepalive: unanswered probes before the connection is dropped (0: the OS default)."""
    cache_timeout_ms: int = Field(default=50, gt=0)
    """Longest one Redis connect or command may take before the cache counts it as failed
    (a miss, or a dropped write); after a few failures in a row the cache is skipped a while."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis for caches; empty disables caching (reads go to PostgreSQL)."""
    cache_ttl_seconds: int = Field(default=300, ge=1)
    """Lifetime of a cached profile or product."""

    host: str = "127.0.0.1"
    """Interface the gRPC server listens on; 0.0.0.0 in containers."""
    port: int | None = Field(default=None, ge=0, le=65535)
    """gRPC port; each service's default is in ``SERVICE_PORTS``; 0 picks a free port."""
    grace_seconds: float = Field(default=10.0, ge=0)
    """On SIGTERM, how long in-flight calls may run before they are cancelled."""
    health_probe_seconds: float = Field(default=2.0, gt=0)
    """Interval of the dependency probe that drives the health status."""
    health_probe_timeout_seconds: float = Field(default=1.0, gt=0)
    """A dependency probe that has not answered within this long failed: NOT_SERVING."""
    default_deadline_seconds: float = Field(default=2.0, gt=0)
    """Deadline for downstream calls when the incoming call carries none."""

    profiles_addr: str = _local("profiles")
    catalog_addr: str = _local("catalog")
    retrieval_addr: str = _local("retrieval")
    ranking_addr: str = _local("ranking")
    feedback_addr: str = _local("feedback")

    artifact_dir: str = ".magpie/artifacts"
    """Where trained model bundles live, one directory per version (a shared volume in k8s)."""
    data_dir: str = ""
    """Cache of downloaded data sets and text embeddings; empty means ~/.cache/magpie.
    (Read by the data and learning tools, which also run outside a service.)"""
    model_repository: str = "model_repository"
    """Triton model repository that published versions are copied into."""
    model_name: str = "magpie"
    """Registry name of the model bundles (retrieval + ranker) that serving follows."""
    triton_addr: str = "127.0.0.1:8001"
    """Triton's gRPC endpoint."""
    triton_model: str = TRITON_RANKER
    """Name of the ranker in the Triton model repository."""
    triton_timeout_seconds: float = Field(default=0.2, gt=0)
    """Most time one ranker inference may take before Recommend falls back."""
    triton_tls: bool = False
    """Reach Triton over mutual TLS with this process's certificate (``tls_*`` files); Triton
    then runs with ``--grpc-use-ssl`` and ``--grpc-use-ssl-mutual``."""
    model_poll_seconds: float = Field(default=1.0, gt=0)
    """How often retrieval and ranking read the registry's aliases and report the versions
    they hold (a promotion or rollback takes effect within about this long)."""

    broker_url: str = "redis://127.0.0.1:6379/1"
    """Celery broker of the retraining worker: Redis, or RabbitMQ as amqp://user:pass@host//."""
    result_backend: str = "redis://127.0.0.1:6379/2"
    """Where Celery keeps task states (the run's own state lives in PostgreSQL)."""
    retrain_schedule_seconds: float = Field(default=21_600.0, ge=0)
    """Interval of the scheduled retraining run (beat); 0 disables the schedule."""
    retrain_event_threshold: int = Field(default=50_000, ge=0)
    """New events since the last run that start a run at once; 0 disables the trigger."""
    retrain_lease_seconds: float = Field(default=60.0, gt=0)
    """A stage's lease: extended while its worker lives; once expired the stage is resumed."""
    retrain_stage_attempts: int = Field(default=3, ge=1)
    """Attempts of one stage (its worker died or a dependency failed) before the run fails."""
    retrain_tasks_per_child: int = Field(default=10, ge=1)
    """Tasks a worker's prefork child runs before it is replaced (training leaves memory)."""
    retrain_stage_seconds: float = Field(default=14_400.0, gt=0)
    """Hard time limit of one stage task (training is the long one)."""
    retrain_pipeline: str = ""
    """JSON file of pipeline settings for retraining (as ``magpie train --config``); empty:
    the defaults, or the parameters ``magpie tune`` recorded and proved better."""
    retrain_holdout_days: float = Field(default=7.0, gt=0)
    """The gate's time-forward holdout: events of the newest this many days, never trained on."""
    gate_margin: float = Field(default=0.02, ge=0, le=1)
    """A candidate worse than the champion by more than this share of its NDCG@10 is rejected."""
    gate_int8_drift: float = Field(default=0.02, ge=0, le=1)
    """Largest share of NDCG@10 that the INT8 ranker may lose against FP32."""
    gate_ranker_ms: float = Field(default=25.0, gt=0)
    """Slowest INT8 ranker accepted: p50 ms for 500 candidates on one thread."""
    retrain_executor: Literal["worker", "kubernetes"] = "worker"
    """Where the training stage runs: in the Celery worker, or as a Kubernetes Job."""
    k8s_namespace: str = "magpie"
    """Namespace of training Jobs."""
    k8s_train_image: str = ""
    """Image of training Jobs (the trainer image, pinned by digest)."""
    k8s_train_gpus: int = Field(default=1, ge=0)
    """``nvidia.com/gpu`` a training Job requests."""
    k8s_train_resources: str = (
        '{"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "32Gi"}}'
    )
    """JSON: requests and limits of a training Job's container (GPUs are added to limits)."""
    k8s_node_selector: str = "{}"
    """JSON object: node selector of training Jobs (e.g. a GPU node pool)."""
    k8s_tolerations: str = "[]"
    """JSON list: tolerations of training Jobs (e.g. the GPU taint)."""
    k8s_artifact_claim: str = ""
    """PersistentVolumeClaim (ReadWriteMany) mounted at ``artifact_dir`` in training Jobs."""
    k8s_env_secret: str = ""
    """Secret whose keys become the Job's environment (MAGPIE_DATABASE_URL and the like)."""
    k8s_job_deadline_seconds: int = Field(default=21_600, gt=0)
    """``activeDeadlineSeconds`` of a training Job."""
    k8s_job_backoff_limit: int = Field(default=3, ge=0)
    """``backoffLimit``: pod failures (other than evictions) before the Job fails."""
    k8s_job_ttl_seconds: int = Field(default=86_400, ge=0)
    """``ttlSecondsAfterFinished``: how long a finished Job stays for inspection."""

    log_level: str = "INFO"
    log_json: bool = True
    """JSON lines on stdout; plain text for a developer's terminal when false."""
    user_hash_key: str = ""
    """HMAC key of the hashed user ids in spans, logs and metrics, and of the deleted users
    the platform remembers (set it from a Secret; changing it forgets those deletions);
    empty: a built-in key (pseudonymous, but guessable ids can be recomputed). Tracing
    itself is configured by the standard OTEL_* variables (magpie.runtime.telemetry)."""
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of this process's Prometheus /metrics; default its gRPC port + 1000 (the worker:
    51060); 0 picks a free port."""
    metrics_enabled: bool = True
    """Serve Prometheus metrics at all."""

    auth_tokens_file: str = ""
    """JSON file of the callers a service accepts, with their roles and token digests (a
    mounted Secret; magpie.runtime.auth). Empty: no authentication, for a loopback
    development platform only (the service warns at start)."""
    auth_token_file: str = ""
    """File holding the token this process presents to other Magpie services; empty: none."""
    reflection_enabled: bool = True
    """Serve gRPC reflection (for grpcurl); it needs a valid token when auth is on."""
    tls_cert_file: str = ""
    """PEM certificate chain this process presents, as a server and (mutual TLS) as a
    client; with ``tls_key_file`` it turns TLS on. Re-read when it changes (cert-manager)."""
    tls_key_file: str = ""
    """PEM private key of ``tls_cert_file``."""
    tls_ca_file: str = ""
    """PEM CA bundle that peers' certificates must chain to: servers verify clients against
    it (mutual TLS, see ``tls_client_auth``), clients verify servers. Empty with TLS on:
    clients use the system roots and servers ask no client certificate."""
    tls_client_auth: bool = True
    """With TLS and a CA bundle, servers refuse clients without a certificate it signed."""
    probe_port: int | None = Field(default=None, ge=0, le=65535)
    """With TLS: a plaintext port serving only gRPC health, for kubelet probes (they do not
    speak TLS). None: no such port."""
    max_in_flight: int = Field(default=64, ge=1)
    """Calls one process runs at once; more are refused with RESOURCE_EXHAUSTED at once
    (magpie.runtime.admission)."""
    rate_limit_per_caller: float = Field(default=0.0, ge=0)
    """Calls per second one caller may make to one process; 0: no limit."""
    rate_limit_burst: float = Field(default=50.0, ge=1)
    """Calls a caller may make at once above its rate (the token bucket's size)."""
    stream_idle_seconds: float = Field(default=60.0, gt=0)
    """A request stream that sends nothing for this long is ended (DEADLINE_EXCEEDED)."""

    console_port: int = Field(default=CONSOLE_PORT, ge=0, le=65535)
    """HTTP port of the web console (services.console); 0 picks a free port."""
    console_trace_url: str = ""
    """Trace viewer address with ``{trace_id}`` in it (e.g. a Jaeger or Tempo UI:
    ``https://jaeger.example/trace/{trace_id}``); the console links each answer's trace
    there. Empty: it shows the ``magpie trace`` command instead."""
    console_open_role: Literal["reader", "writer"] = "reader"
    """Role of every browser when the console has no tokens file (``auth_tokens_file``
    empty, a loopback development platform); with one, people sign in with their token."""

    @property
    def cache_prefix(self) -> str:
        """Start of every Redis key, ``magpie:<database name>:``: platforms whose caches
        share one Redis (several checkouts, a benchmark next to ``magpie up``) hold
        different databases, and a cache must only answer for its own."""
        database = urlsplit(self.database_url).path.strip("/") or "default"
        return f"magpie:{database}:"

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_variables(cls, values: object) -> object:
        known = {ENV_PREFIX + name.upper() for name in cls.model_fields}
        unknown = sorted(k for k in os.environ if k.startswith(ENV_PREFIX) and k not in known)
        if unknown:
            raise ValueError(f"unknown settings in environment: {', '.join(unknown)}")
        return values


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Builds settings from the environment, with explicit overrides taking precedence."""
    return Settings(**dict(overrides or {}))
