"""Fixtures of the training-Job tests: the fake Kubernetes API (:mod:`.fake_kube`) with
the real ``kubernetes`` client on it, settings for the ``kubernetes`` executor, runs."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from magpie.retraining.jobs import JobClient
from magpie.retraining.runs import Run, Stage
from magpie.runtime.settings import Settings, load_settings
from tests.integration.retraining.fake_kube import FakeKube, PodCommand

NAMESPACE = "magpie"
WAITS = ["sh", "-c", 'read code; exit "$code"']
"""A pod that runs until the test sends it its exit code (``kube.send(name, "0\\n")``)."""


def exits(code: int) -> list[str]:
    """A pod that exits with ``code`` at once."""
    return ["sh", "-c", f"exit {code}"]


def pods(*commands: Sequence[str]) -> PodCommand:
    """Pod ``i`` runs ``commands[i]`` (the last one for every later pod)."""
    return lambda job, index: commands[min(index, len(commands) - 1)]


def job_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "retrain_executor": "kubernetes",
        "k8s_namespace": NAMESPACE,
        "k8s_train_image": "registry.example/magpie-trainer:test",
        "artifact_dir": str(tmp_path / "artifacts"),
        "k8s_artifact_claim": "magpie-artifacts",
        "k8s_env_secret": "magpie-env",
        "k8s_job_backoff_limit": 3,
        "log_json": False,
    }
    values.update(overrides)
    return load_settings(values)


def new_run(version: int | None = 7, stage: Stage = "train", **fields: Any) -> Run:
    now = datetime.datetime.now(datetime.UTC)
    values: dict[str, Any] = {
        "run_id": str(uuid.uuid4()),
        "model_name": "magpie",
        "trigger": "manual",
        "trigger_context": {},
        "status": "running",
        "stage": stage,
        "version": version,
        "params": {},
        "snapshot": {},
        "progress": {},
        "verdict": None,
        "error": "",
        "holder": None,
        "lease_until": None,
        "created_at": now,
        "updated_at": now,
        "finished_at": None,
    }
    values.update(fields)
    return Run(**values)


def api_client(url: str) -> Any:
    from kubernetes import client

    return client.ApiClient(client.Configuration(host=url))


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[FakeKube]:
    """The fake API server; a test sets ``kube.pod_command`` (and ``kube.secrets``)."""
    pod_dir = tmp_path / "pods"
    pod_dir.mkdir()
    with FakeKube(pod_dir) as fake:
        yield fake


@pytest.fixture
def jobs(kube: FakeKube) -> Iterator[JobClient]:
    """A worker's client: the real ``kubernetes`` client on the fake API server."""
    with JobClient(NAMESPACE, api_client(kube.url)) as client:
        yield client


@pytest.fixture
def k8s_settings(tmp_path: Path) -> Settings:
    return job_settings(tmp_path)
