"""The training Job's manifest (no servers): its shape, and that it validates against the
Kubernetes JSON schemas of the oldest supported (1.29) and the newest bundled version."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from packaging.version import Version

from magpie.retraining.jobs import BUG_EXIT_CODE, CONTAINER, job_name, train_job
from magpie.retraining.runs import Run
from magpie.runtime.settings import Settings, load_settings

RUN_ID = "3f2a9c4e-1b7d-4e8a-9c1f-0123456789ab"
IMAGE = "registry.example/magpie-trainer@sha256:" + "a" * 64
TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
NODE_SELECTOR = {"cloud.google.com/gke-accelerator": "nvidia-l4"}


def _run(run_id: str = RUN_ID) -> Run:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    return Run(
        run_id, "magpie", "manual", {}, "running", "train", 7, {}, {}, {}, None, "", None, None,
        now, now, None,
    )  # fmt: skip


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "retrain_executor": "kubernetes",
        "k8s_namespace": "training",
        "k8s_train_image": IMAGE,
        "artifact_dir": "/artifacts",
        "k8s_artifact_claim": "magpie-artifacts",
        "k8s_env_secret": "magpie-env",
        "k8s_train_gpus": 2,
        "k8s_node_selector": json.dumps(NODE_SELECTOR),
        "k8s_tolerations": json.dumps(TOLERATIONS),
        "k8s_job_backoff_limit": 4,
        "k8s_job_deadline_seconds": 7200,
        "k8s_job_ttl_seconds": 600,
    }
    values.update(overrides)
    return load_settings(values)


def _pod(manifest: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return pod


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    [container] = _pod(manifest)["containers"]
    assert isinstance(container, dict)
    return container


def test_the_name_is_the_runs_and_the_same_every_time() -> None:
    manifest = train_job(_settings(), _run())

    assert manifest["metadata"]["name"] == job_name(RUN_ID) == "magpie-train-3f2a9c4e"
    assert train_job(_settings(), _run()) == manifest
    assert job_name("3F2A9C4E-0000-4000-8000-000000000000") == "magpie-train-3f2a9c4e"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", manifest["metadata"]["name"])
    assert manifest["metadata"]["namespace"] == "training"


def test_labels_name_the_app_the_component_and_the_run() -> None:
    manifest = train_job(_settings(), _run())
    labels = {
        "app.kubernetes.io/name": "magpie",
        "app.kubernetes.io/component": "trainer",
        "magpie.dev/run-id": RUN_ID,
    }

    assert manifest["metadata"]["labels"] == labels
    assert manifest["spec"]["template"]["metadata"]["labels"] == labels


def test_the_limits_the_deadline_and_the_ttl_come_from_settings() -> None:
    spec = train_job(_settings(), _run())["spec"]

    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (4, 7200)
    assert spec["ttlSecondsAfterFinished"] == 600


def test_the_failure_policy_ignores_disruptions_and_fails_at_once_on_a_bug() -> None:
    spec = train_job(_settings(), _run())["spec"]

    assert spec["podFailurePolicy"]["rules"] == [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {
            "action": "FailJob",
            "onExitCodes": {
                "containerName": CONTAINER,
                "operator": "In",
                "values": [BUG_EXIT_CODE],
            },
        },
    ]
    assert BUG_EXIT_CODE not in (0, 1, 137, 143)  # not success, a crash, OOM or SIGTERM
    assert _pod(train_job(_settings(), _run()))["restartPolicy"] == "Never"


def test_the_container_runs_the_train_job_command_of_the_run() -> None:
    container = _container(train_job(_settings(), _run()))

    assert container["name"] == "trainer"
    assert container["image"] == IMAGE
    assert container["command"] == ["magpie", "retrain", "train-job", RUN_ID]
    assert container["envFrom"] == [{"secretRef": {"name": "magpie-env"}}]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MAGPIE_ARTIFACT_DIR"] == "/artifacts"
    assert env["MAGPIE_MODEL_NAME"] == "magpie"


def test_the_gpus_are_added_to_the_limits_only_when_asked_for() -> None:
    resources = '{"requests": {"cpu": 4, "memory": "16Gi"}, "limits": {"memory": "32Gi"}}'
    with_gpus = _container(train_job(_settings(k8s_train_resources=resources), _run()))
    without = _container(train_job(_settings(k8s_train_gpus=0), _run()))

    assert with_gpus["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi"},  # quantities as strings
        "limits": {"memory": "32Gi", "nvidia.com/gpu": "2"},
    }
    assert "nvidia.com/gpu" not in without["resources"].get("limits", {})
    assert "nvidia.com/gpu" not in without["resources"].get("requests", {})


def test_the_node_selector_and_tolerations_come_from_settings() -> None:
    pod = _pod(train_job(_settings(), _run()))
    plain = _pod(train_job(_settings(k8s_node_selector="{}", k8s_tolerations="[]"), _run()))

    assert pod["nodeSelector"] == NODE_SELECTOR
    assert pod["tolerations"] == TOLERATIONS
    assert "nodeSelector" not in plain and "tolerations" not in plain


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("k8s_node_selector", "[]", "MAGPIE_K8S_NODE_SELECTOR must be a JSON dict"),
        ("k8s_tolerations", "{", "MAGPIE_K8S_TOLERATIONS is not JSON"),
        ("k8s_train_resources", '{"limit": {}}', "unknown keys ['limit']"),
        ("k8s_train_image", "", "MAGPIE_K8S_TRAIN_IMAGE is not set"),
        ("artifact_dir", "artifacts", "must be an absolute path"),
    ],
)
def test_bad_settings_are_refused_with_the_setting_named(
    field: str, value: str, named: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        train_job(_settings(**{field: value}), _run())


def test_the_artifact_volume_is_the_claim_at_the_artifact_dir() -> None:
    manifest = train_job(_settings(), _run())
    pod, container = _pod(manifest), _container(manifest)
    without = train_job(_settings(k8s_artifact_claim="", k8s_env_secret=""), _run())

    assert {"name": "artifacts", "persistentVolumeClaim": {"claimName": "magpie-artifacts"}} in (
        pod["volumes"]
    )
    assert {"name": "artifacts", "mountPath": "/artifacts"} in container["volumeMounts"]
    assert [v["name"] for v in _pod(without)["volumes"]] == ["tmp"]
    assert "envFrom" not in _container(without)


def test_the_pod_meets_the_restricted_pod_security_standard() -> None:
    manifest = train_job(_settings(), _run())
    pod, container = _pod(manifest), _container(manifest)
    pod_context, context = pod["securityContext"], container["securityContext"]

    assert pod_context["runAsNonRoot"] is True
    assert (pod_context["runAsUser"], pod_context["runAsGroup"]) == (10001, 10001)
    assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["automountServiceAccountToken"] is False
    assert "hostNetwork" not in pod and "privileged" not in context


def test_the_manifest_is_plain_json() -> None:
    manifest = train_job(_settings(), _run())

    assert json.loads(json.dumps(manifest)) == manifest


def _newest_bundled_version() -> str:
    """The newest Kubernetes version whose strict schemas kubernetes_validate ships."""
    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    versions = [
        re.sub(r"^v(.*)-local-strict$", r"\1", d.name)
        for d in schemas.iterdir()
        if d.is_dir() and d.name.endswith("-local-strict")
    ]
    newest = max(versions, key=Version)
    assert newest == kubernetes_validate.latest_version()
    return newest


@pytest.mark.parametrize("version", ["1.29", _newest_bundled_version()])
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"k8s_train_gpus": 0, "k8s_artifact_claim": "", "k8s_env_secret": "", "artifact_dir": "a"},
    ],
    ids=["everything", "minimal"],
)
def test_the_manifest_validates_strictly(version: str, overrides: dict[str, Any]) -> None:
    manifest = train_job(_settings(**overrides), _run())

    validated = kubernetes_validate.validate(manifest, version, strict=True)

    assert validated == ".".join(version.split(".")[:2])
