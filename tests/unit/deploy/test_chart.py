"""The Helm chart: lint, render over a matrix of values, validate every object against the
Kubernetes schemas (1.29 and the newest kubernetes-validate ships), and check the policies
the platform relies on over the rendered objects."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from magpie.runtime.settings import Settings
from tests.support import REPO
from tests.unit.deploy.conftest import CHART, Manifest, run_helm

Render = Callable[..., list[Manifest]]

MATRIX: dict[str, tuple[str, ...]] = {
    "defaults": (),
    "cpu-only": ("cpu-only-values.yaml",),
    "gpu-production": ("prod-values.yaml",),
    "dev": ("dev-values.yaml",),
    "keda-redis": ("keda-values.yaml",),
    "keda-rabbitmq": ("keda-rabbitmq-values.yaml",),
    "autoscaling-off": ("no-autoscaling-values.yaml",),
    "existing-secrets": ("existing-secrets-values.yaml",),
    "object-storage": ("object-storage-values.yaml",),
    "secure": ("secure-values.yaml",),
    "console": ("console-values.yaml",),
}
CONSOLE_CASES = {"gpu-production", "secure", "console"}
"""The value sets that turn the web console on (it is off by default)."""
CONSOLE_PORT = 8088
CRD_GROUPS = {"cert-manager.io", "keda.sh", "monitoring.coreos.com"}
"""Custom resources: kubernetes-validate has no schema for them (allow-listed by group)."""
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
SERVICES = {
    "profiles": 50051,
    "catalog": 50052,
    "retrieval": 50053,
    "ranking": 50054,
    "feedback": 50055,
}
PROBE_PORT_OFFSET = 2000
"""With TLS, kubelet probes go to a plaintext health-only port: the gRPC port + this."""
COMPONENT = "app.kubernetes.io/component"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


@cache
def _validate(obj: str, version: str) -> None:
    """kubernetes-validate is slow (it loads schemas per call); most objects repeat across
    the matrix, so each distinct one is validated once per version."""
    kubernetes_validate.validate(json.loads(obj), version, strict=True)


def _pod_specs(objects: list[Manifest]) -> Iterator[tuple[Manifest, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield obj, obj["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            yield obj, obj["spec"]


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def _component(obj: Manifest) -> str:
    labels = obj["metadata"]["labels"]
    return str(labels[COMPONENT])


@pytest.fixture(params=sorted(MATRIX), scope="module")
def case(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def objects(render: Render, case: str) -> list[Manifest]:
    return render(*MATRIX[case])


def test_lint_strict(k8s_tools: Path, case: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    for values in MATRIX[case]:
        args += ["--values", str(CHART / "ci" / values)]
    run_helm(k8s_tools, *args)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_kubernetes(objects: list[Manifest], version: str) -> None:
    checked = 0
    for obj in objects:
        group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
        if group in CRD_GROUPS:
            continue
        _validate(json.dumps(obj, sort_keys=True), version)
        checked += 1
    assert checked > 20


def test_containers_are_restricted_and_sized(objects: list[Manifest]) -> None:
    for owner, spec in _pod_specs(objects):
        where = f"{owner['kind']}/{owner['metadata']['name']}"
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
        tmp = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in _containers(spec):
            name = f"{where}:{container['name']}"
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp, f"{name}: /tmp is not an emptyDir"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{name} {kind}"


def test_long_running_containers_have_all_three_probes(objects: list[Manifest]) -> None:
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in container, f"{obj['metadata']['name']}:{container['name']}"


def _env(container: dict[str, Any]) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_services_use_native_grpc_probes(objects: list[Manifest]) -> None:
    """On the gRPC port, or with TLS on the plaintext probe port (kubelet speaks no TLS)."""
    for obj in objects:
        if obj["kind"] == "Deployment" and _component(obj) in SERVICES:
            (container,) = obj["spec"]["template"]["spec"]["containers"]
            port = SERVICES[_component(obj)]
            if "MAGPIE_TLS_CERT_FILE" in _env(container):
                port += PROBE_PORT_OFFSET
            assert container["startupProbe"]["grpc"] == {"port": port}
            assert container["readinessProbe"]["grpc"] == {"port": port}


def test_images_are_pinned_by_digest_never_latest(objects: list[Manifest]) -> None:
    images = {c["image"] for _, spec in _pod_specs(objects) for c in _containers(spec)}
    config = next(o for o in objects if o["kind"] == "ConfigMap" and _component(o) == "config")
    images.add(config["data"]["MAGPIE_K8S_TRAIN_IMAGE"])  # the image of training Jobs
    for image in images:
        assert DIGEST.search(image), image
        assert ":latest" not in image, image


def test_every_autoscaled_workload_has_a_pdb(objects: list[Manifest]) -> None:
    pdbs = {
        tuple(sorted(o["spec"]["selector"]["matchLabels"].items()))
        for o in objects
        if o["kind"] == "PodDisruptionBudget"
    }
    workloads = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    targets = [
        o["spec"]["scaleTargetRef"]["name"]
        for o in objects
        if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
    ]
    assert targets or not any(o["kind"] == "HorizontalPodAutoscaler" for o in objects)
    for target in targets:
        selector = workloads[target]["spec"]["selector"]["matchLabels"]
        assert tuple(sorted(selector.items())) in pdbs, f"{target} autoscales without a PDB"


def test_pdbs_only_where_replicas_can_exceed_one(render: Render) -> None:
    dev = render("dev-values.yaml")
    assert not [o for o in dev if o["kind"] == "PodDisruptionBudget"]
    assert not [o for o in dev if o["kind"] == "HorizontalPodAutoscaler"]


def test_only_triton_requests_gpus(objects: list[Manifest], case: str) -> None:
    gpu_containers = {
        f"{_component(owner)}:{c['name']}"
        for owner, spec in _pod_specs(objects)
        for c in _containers(spec)
        if any("nvidia.com/gpu" in c["resources"].get(k, {}) for k in ("requests", "limits"))
    }
    triton = next(o for o in objects if o["kind"] == "Deployment" and _component(o) == "triton")
    gpu = triton["metadata"]["labels"]["magpie.dev/triton-profile"] == "gpu"
    assert gpu_containers == ({"triton:triton"} if gpu else set()), case
    spec = triton["spec"]["template"]["spec"]
    if gpu:
        assert spec["runtimeClassName"] == "nvidia"
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
            "tolerations"
        ]
    else:
        assert "runtimeClassName" not in spec and "nodeSelector" not in spec


def test_every_service_port_is_named(objects: list[Manifest]) -> None:
    for obj in objects:
        if obj["kind"] == "Service":
            for port in obj["spec"]["ports"]:
                assert port.get("name"), obj["metadata"]["name"]


def test_beat_is_one_replica_recreated(objects: list[Manifest]) -> None:
    beat = next(o for o in objects if o["kind"] == "Deployment" and _component(o) == "beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert not [
        o
        for o in objects
        if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
        and o["spec"]["scaleTargetRef"]["name"] == beat["metadata"]["name"]
    ]


def test_the_worker_may_manage_jobs_only_with_the_kubernetes_executor(render: Render) -> None:
    prod = render("prod-values.yaml")
    (role,) = [o for o in prod if o["kind"] == "Role"]
    assert role["rules"] == [
        {
            "apiGroups": ["batch"],
            "resources": ["jobs"],
            "verbs": ["create", "get", "list", "watch", "delete"],
        }
    ]
    (binding,) = [o for o in prod if o["kind"] == "RoleBinding"]
    assert binding["subjects"][0]["name"] == "magpie-worker"
    assert not [o for o in render() if o["kind"] in ("Role", "RoleBinding")]


def test_every_magpie_variable_is_a_setting(objects: list[Manifest]) -> None:
    """A process stops at start on an unknown MAGPIE_* variable: the chart sets none."""
    known = {f"MAGPIE_{name.upper()}" for name in Settings.model_fields}
    names = set()
    for obj in objects:
        if obj["kind"] == "ConfigMap" and _component(obj) == "config":
            names |= set(obj["data"])
    for _, spec in _pod_specs(objects):
        for container in _containers(spec):
            names |= {e["name"] for e in container.get("env", [])}
    assert {n for n in names if n.startswith("MAGPIE_")} - known == set()


def test_secrets_come_from_existing_secrets_only(render: Render) -> None:
    assert not [o for o in render("existing-secrets-values.yaml") if o["kind"] == "Secret"]
    ranking = next(
        o
        for o in render("existing-secrets-values.yaml")
        if o["kind"] == "Deployment" and _component(o) == "ranking"
    )
    env = {e["name"]: e for e in ranking["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MAGPIE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "pg-app-credentials"
    # the deprecated existingSecret still names the Secret of the keys without their own
    assert env["MAGPIE_USER_HASH_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "legacy-magpie-env"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert not re.search(r"://[^/\s]*:[^@\s]*@", yaml.safe_dump(values)), "a password in values"


def test_the_deprecated_key_is_announced(k8s_tools: Path) -> None:
    done = run_helm(
        k8s_tools,
        "install",
        "magpie",
        str(CHART),
        "--dry-run=client",
        "--namespace",
        "magpie",
        "--set",
        "existingSecret=old-secret",
    )
    assert "DEPRECATED: `existingSecret` was renamed to `secrets.name`" in done.stdout


@pytest.mark.parametrize(
    "setting",
    [
        "services.rankng.port=50054",
        "triton.profil=gpu",
        "worker.keda.enabld=true",
        "services.ranking.replicas=two",
        "triton.profile=tpu",
        "images.serving.tag=latest",
        "images.serving.digest=sha256:abc",
        "networkPolicy.postgresql.to[0].podselector.a=b",
        "security.auth.enabled=true",  # without the Secret's name
        "security.tls.enabled=true",
        "security.auth.enabeld=true",
        "security.tls.certManager.issureRef.name=ca",
        "security.tls.certManager.duration=90days",
        "config.maxInFlight=0",
        "config.rateLimitPerCaller=-1",
        "config.rateLimitBurst=0.5",
        "config.streamIdleSeconds=0",
        "console.enabeld=true",
        "console.openRole=admin",
        "console.traceUrl=https://jaeger.example.com/trace",  # without {trace_id}
        "console.ingress.pathType=Regex",
        "console.ingress.path=magpie",
    ],
)
def test_the_schema_refuses_misspelled_keys_and_bad_values(k8s_tools: Path, setting: str) -> None:
    done = run_helm(k8s_tools, "template", "magpie", str(CHART), "--set", setting, check=False)
    assert done.returncode != 0, setting
    assert "schema" in done.stderr or "values don't meet" in done.stderr, done.stderr


@pytest.mark.parametrize("switch", ["auth", "tls"])
def test_the_schema_wants_the_secret_of_a_security_switch_turned_on(
    k8s_tools: Path, switch: str
) -> None:
    on = ["template", "magpie", str(CHART), "--set", f"security.{switch}.enabled=true"]
    done = run_helm(k8s_tools, *on, check=False)
    assert done.returncode != 0 and f"/security/{switch}/secretName" in done.stderr, done.stderr
    run_helm(k8s_tools, *on, "--set", f"security.{switch}.secretName=magpie-{switch}")


def test_the_schema_is_self_contained() -> None:
    text = (CHART / "values.schema.json").read_text()
    refs = re.findall(r'"\$ref":\s*"([^"]+)"', text)
    assert refs and all(r.startswith("#/") for r in refs)
    assert '"additionalProperties": true' not in text


def test_monitoring_objects_need_their_crds(render: Render) -> None:
    kinds = {o["kind"] for o in render(crds=False)}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
    with_crds = render()
    assert {"ServiceMonitor", "PrometheusRule"} <= {o["kind"] for o in with_crds}
    dashboards = [
        o
        for o in with_crds
        if o["kind"] == "ConfigMap" and o["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    assert len(dashboards) == 1


def test_helm_test_checks_every_service(objects: list[Manifest]) -> None:
    (pod,) = [o for o in objects if o["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert set(env["TEST_SERVICES"].split(",")) == set(SERVICES)
    assert "Recommend" in pod["spec"]["containers"][0]["command"][2]


def test_the_migration_is_a_pre_install_and_pre_upgrade_hook(objects: list[Manifest]) -> None:
    (job,) = [o for o in objects if o["kind"] == "Job"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "magpie",
        "db",
        "upgrade",
    ]


def test_keda_counts_runs_in_progress_not_only_the_backlog(render: Render) -> None:
    for values in ("keda-values.yaml", "keda-rabbitmq-values.yaml"):
        objects = render(values)
        (scaled,) = [o for o in objects if o["kind"] == "ScaledObject"]
        types = {t["type"]: t["metadata"] for t in scaled["spec"]["triggers"]}
        assert "status = 'running'" in types["postgresql"]["query"]
        assert "redis" in types or types["rabbitmq"]["protocol"] == "http"  # ready + unacked
        worker = next(o for o in objects if o["kind"] == "Deployment" and _component(o) == "worker")
        assert "replicas" not in worker["spec"]
        assert not [
            o
            for o in objects
            if o["kind"] == "HorizontalPodAutoscaler" and _component(o) == "worker"
        ]


def test_ranking_and_triton_scale_on_the_signal_that_matters(objects: list[Manifest]) -> None:
    hpas = {_component(o): o for o in objects if o["kind"] == "HorizontalPodAutoscaler"}
    metrics = {
        c: [m.get("pods", {}).get("metric", {}).get("name") for m in h["spec"]["metrics"]]
        for c, h in hpas.items()
    }
    if "ranking" in metrics:
        assert "magpie_rpc_in_flight" in metrics["ranking"]
    if "triton" in metrics:
        assert "magpie_triton_queue_us_per_request" in metrics["triton"]
    for hpa in hpas.values():
        assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60


def test_artifacts_are_shared_read_write_many(objects: list[Manifest], case: str) -> None:
    (claim,) = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    mounts = {}
    for owner, spec in _pod_specs(objects):
        claims = {v["name"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
        for c in spec["containers"]:
            for m in c.get("volumeMounts", []):
                if m["name"] in claims:
                    mounts[_component(owner)] = m.get("readOnly", False)
    assert mounts == {"retrieval": True, "ranking": True, "triton": True, "worker": False}, case
    if case == "object-storage":
        (volume,) = [o for o in objects if o["kind"] == "PersistentVolume"]
        assert volume["spec"]["csi"]["volumeHandle"] == "magpie-models/prod"


# --- Authentication, TLS and overload limits of the five services -------------------------

AUTH_DIR = "/var/run/magpie/auth"
TLS_DIR = "/var/run/magpie/tls"
TLS_FILES = {
    "MAGPIE_TLS_CERT_FILE": f"{TLS_DIR}/tls.crt",
    "MAGPIE_TLS_KEY_FILE": f"{TLS_DIR}/tls.key",
    "MAGPIE_TLS_CA_FILE": f"{TLS_DIR}/ca.crt",
}
"""The keys of a kubernetes.io/tls Secret (cert-manager's, with the CA), as mounted."""
SECRET_MODE = 0o440


def _service_containers(objects: list[Manifest]) -> dict[str, tuple[dict[str, Any], Any]]:
    """component -> (its container, its pod spec), for the five services."""
    found = {}
    for obj in objects:
        if obj["kind"] == "Deployment" and _component(obj) in SERVICES:
            spec = obj["spec"]["template"]["spec"]
            (container,) = spec["containers"]
            found[_component(obj)] = (container, spec)
    assert set(found) == set(SERVICES)
    return found


def _secret_mount(container: dict[str, Any], spec: dict[str, Any], path: str) -> str:
    """The Secret a file is read from: mounted whole (a subPath mount would never see the
    Secret's updates), read-only, group-readable only."""
    directory = path.rsplit("/", 1)[0]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    assert mount.get("readOnly") is True and "subPath" not in mount, mount
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["defaultMode"] == SECRET_MODE, volume
    return str(volume["secret"]["secretName"])


def test_secure_values_turn_on_auth_and_mutual_tls_in_every_service(render: Render) -> None:
    values = yaml.safe_load((CHART / "ci" / "secure-values.yaml").read_text())["security"]
    for name, (container, spec) in _service_containers(render("secure-values.yaml")).items():
        env = _env(container)
        secrets = {
            _secret_mount(container, spec, str(env[variable]))
            for variable in ("MAGPIE_AUTH_TOKENS_FILE", "MAGPIE_AUTH_TOKEN_FILE")
        }
        assert secrets == {values["auth"]["secretName"]}, name
        assert env["MAGPIE_AUTH_TOKENS_FILE"] == f"{AUTH_DIR}/callers.json"
        assert env["MAGPIE_AUTH_TOKEN_FILE"] == f"{AUTH_DIR}/service-token"
        assert {k: env[k] for k in TLS_FILES} == TLS_FILES, name
        assert {_secret_mount(container, spec, path) for path in TLS_FILES.values()} == {
            values["tls"]["secretName"]
        }
        assert env["MAGPIE_TLS_CLIENT_AUTH"] == "true"
        assert env["MAGPIE_REFLECTION_ENABLED"] == "false"
        probe = SERVICES[name] + PROBE_PORT_OFFSET
        assert env["MAGPIE_PROBE_PORT"] == str(probe)
        assert {"name": "probe", "containerPort": probe, "protocol": "TCP"} in container["ports"]
        assert container["livenessProbe"]["tcpSocket"] == {"port": "probe"}


def test_without_security_values_the_services_run_open_and_probe_the_grpc_port(
    render: Render,
) -> None:
    for name, (container, spec) in _service_containers(render()).items():
        env = _env(container)
        assert not {k for k in env if k.startswith(("MAGPIE_AUTH_", "MAGPIE_TLS_"))}, name
        assert "MAGPIE_PROBE_PORT" not in env
        assert env["MAGPIE_REFLECTION_ENABLED"] == "true"
        assert not [v for v in spec["volumes"] if "secret" in v]
        assert container["livenessProbe"]["tcpSocket"] == {"port": "grpc"}


def test_production_authenticates_callers_and_serves_no_reflection(render: Render) -> None:
    for container, _spec in _service_containers(render("prod-values.yaml")).values():
        env = _env(container)
        assert env["MAGPIE_AUTH_TOKENS_FILE"] and env["MAGPIE_AUTH_TOKEN_FILE"]
        assert env["MAGPIE_REFLECTION_ENABLED"] == "false"


def test_the_helm_test_pod_presents_the_service_token_and_certificate(render: Render) -> None:
    """It calls Recommend (a reader's method) over mutual TLS; it gets the token alone, not
    the tokens file of the services."""
    (pod,) = [o for o in render("secure-values.yaml") if o["kind"] == "Pod"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    env = _env(container)
    assert "MAGPIE_AUTH_TOKENS_FILE" not in env
    for variable in ("MAGPIE_AUTH_TOKEN_FILE", *TLS_FILES):
        _secret_mount(container, spec, str(env[variable]))
    (auth,) = [v for v in spec["volumes"] if v["name"] == "auth"]
    assert auth["secret"]["items"] == [{"key": "service-token", "path": "service-token"}]
    script = container["command"][2]
    assert "MAGPIE_AUTH_TOKEN_FILE" in script and "MAGPIE_TLS_CERT_FILE" in script


def test_cert_manager_certifies_every_service_name_for_server_and_client(
    render: Render,
) -> None:
    values = yaml.safe_load((CHART / "ci" / "secure-values.yaml").read_text())["security"]
    (certificate,) = [o for o in render("secure-values.yaml") if o["kind"] == "Certificate"]
    spec = certificate["spec"]
    assert spec["secretName"] == values["tls"]["secretName"]
    assert spec["issuerRef"]["name"] == values["tls"]["certManager"]["issuerRef"]["name"]
    names = {f"magpie-{s}" for s in SERVICES} | {f"magpie-{s}.magpie.svc" for s in SERVICES}
    assert names <= set(spec["dnsNames"])
    assert {"server auth", "client auth"} <= set(spec["usages"])
    assert spec["privateKey"]["rotationPolicy"] == "Always"
    kinds = {o["kind"] for o in render("secure-values.yaml", crds=False)}
    assert "Certificate" not in kinds  # only where cert-manager's CRDs are served


def test_triton_serves_grpc_on_mutual_tls_to_ranking_and_its_sidecar(render: Render) -> None:
    objects = render("secure-values.yaml")
    (triton,) = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "magpie-triton"
    ]
    pod = triton["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    script = containers["triton"]["args"][0]
    for flag in ("--grpc-use-ssl=true", "--grpc-use-ssl-mutual=true", "--grpc-root-cert="):
        assert flag in script
    sync_env = _env(containers["model-sync"])
    assert sync_env["MODEL_SYNC_TLS_NAME"] == "magpie-triton"
    for name in ("triton", "model-sync"):
        mounts = {m["name"]: m for m in containers[name]["volumeMounts"]}
        assert mounts["tls"]["mountPath"] == sync_env["MODEL_SYNC_TLS_DIR"]
    (config,) = [o for o in objects if o["kind"] == "ConfigMap" and "MAGPIE_HOST" in o["data"]]
    assert config["data"]["MAGPIE_TRITON_TLS"] == "true"
    (certificate,) = [o for o in objects if o["kind"] == "Certificate"]
    assert "magpie-triton" in certificate["spec"]["dnsNames"]
    plain = [o for o in render() if o["kind"] == "ConfigMap" and "MAGPIE_HOST" in o["data"]]
    assert "MAGPIE_TRITON_TLS" not in plain[0]["data"]


def test_probe_ports_are_open_to_no_pod(render: Render) -> None:
    """Kubelet probes come from the node, which NetworkPolicies do not govern; no policy
    lets another pod reach the plaintext probe port."""
    probes = {p + PROBE_PORT_OFFSET for p in SERVICES.values()}
    for policy in (o for o in render("secure-values.yaml") if o["kind"] == "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            assert not {p["port"] for p in rule["ports"]} & probes, policy["metadata"]["name"]


def test_overload_limits_reach_the_processes_as_settings(render: Render) -> None:
    (config,) = [
        o
        for o in render("secure-values.yaml")
        if o["kind"] == "ConfigMap" and _component(o) == "config"
    ]
    data = config["data"]
    values = yaml.safe_load((CHART / "ci" / "secure-values.yaml").read_text())["config"]
    assert data["MAGPIE_MAX_IN_FLIGHT"] == str(values["maxInFlight"])
    assert data["MAGPIE_RATE_LIMIT_PER_CALLER"] == str(values["rateLimitPerCaller"])
    assert data["MAGPIE_RATE_LIMIT_BURST"] == str(values["rateLimitBurst"])
    assert data["MAGPIE_STREAM_IDLE_SECONDS"] == str(values["streamIdleSeconds"])
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["config"]
    settings = Settings.model_fields
    assert defaults["maxInFlight"] == settings["max_in_flight"].default
    assert defaults["rateLimitPerCaller"] == settings["rate_limit_per_caller"].default
    assert defaults["rateLimitBurst"] == settings["rate_limit_burst"].default
    assert defaults["streamIdleSeconds"] == settings["stream_idle_seconds"].default


@pytest.mark.parametrize("values", [(), ("secure-values.yaml",)])
def test_notes_warn_loudly_when_callers_are_not_authenticated(
    k8s_tools: Path, values: tuple[str, ...]
) -> None:
    args = ["install", "magpie", str(CHART), "--dry-run=client", "--namespace", "magpie"]
    for path in values:
        args += ["--values", str(CHART / "ci" / path)]
    notes = run_helm(k8s_tools, *args).stdout.split("NOTES:", 1)[1]
    assert ("WARNING: AUTHENTICATION IS OFF" in notes) == (not values), notes


# --- The web console ----------------------------------------------------------------------


def _console(objects: list[Manifest]) -> dict[str, Manifest]:
    """kind -> the console's object of that kind."""
    found = {o["kind"]: o for o in objects if _component(o) == "console"}
    assert len(found) == len([o for o in objects if _component(o) == "console"])
    return found


def test_the_console_is_off_by_default(objects: list[Manifest], case: str) -> None:
    console = _console(objects)
    policies = [
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "NetworkPolicy" and "console" in o["metadata"]["name"]
    ]
    if case in CONSOLE_CASES:
        assert {"ServiceAccount", "Service", "Deployment"} <= set(console), case
        assert policies, case
    else:
        assert console == {} and policies == [], case


def test_the_console_serves_http_probed_on_healthz(render: Render) -> None:
    values = yaml.safe_load((CHART / "ci" / "console-values.yaml").read_text())["console"]
    console = _console(render("console-values.yaml"))
    spec = console["Deployment"]["spec"]
    assert spec["replicas"] == values["replicas"]
    (container,) = spec["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "services.console"]
    assert container["ports"] == [
        {"name": "http", "containerPort": CONSOLE_PORT, "protocol": "TCP"}
    ]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    env = _env(container)
    assert env["MAGPIE_CONSOLE_PORT"] == str(CONSOLE_PORT)
    assert env["MAGPIE_CONSOLE_OPEN_ROLE"] == values["openRole"]
    assert env["MAGPIE_CONSOLE_TRACE_URL"] == values["traceUrl"]
    assert env["OTEL_SERVICE_NAME"] == "console"
    # a client of the services' public APIs alone: no database, cache or broker
    for url in ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "RESULT_BACKEND"):
        assert f"MAGPIE_{url}" not in env, url
    (port,) = console["Service"]["spec"]["ports"]
    assert console["Service"]["spec"]["type"] == "ClusterIP"
    assert (port["port"], port["targetPort"]) == (80, "http")
    assert console["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    (config,) = [
        o
        for o in render("console-values.yaml")
        if o["kind"] == "ConfigMap" and _component(o) == "config"
    ]
    for name, grpc_port in SERVICES.items():
        assert config["data"][f"MAGPIE_{name.upper()}_ADDR"] == f"magpie-{name}:{grpc_port}"


def test_the_console_ingress_routes_its_prefix_to_the_service(render: Render) -> None:
    values = yaml.safe_load((CHART / "ci" / "console-values.yaml").read_text())["console"]
    ingress = _console(render("console-values.yaml"))["Ingress"]
    assert ingress["metadata"]["annotations"] == values["ingress"]["annotations"]
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"secretName": "magpie-console-tls", "hosts": ["magpie.example.com"]}]
    (rule,) = spec["rules"]
    assert rule["host"] == "magpie.example.com"
    assert rule["http"]["paths"] == [
        {
            "path": values["ingress"]["path"],
            "pathType": "ImplementationSpecific",
            "backend": {"service": {"name": "magpie-console", "port": {"name": "http"}}},
        }
    ]
    assert "Ingress" not in _console(render("secure-values.yaml"))


def test_the_console_checks_sign_ins_and_presents_the_services_certificate(
    render: Render,
) -> None:
    """It reads the tokens file (people sign in with their own tokens, which it forwards),
    holds no token of its own, and talks mutual TLS to the services as they do."""
    values = yaml.safe_load((CHART / "ci" / "secure-values.yaml").read_text())["security"]
    deployment = _console(render("secure-values.yaml"))["Deployment"]
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = _env(container)
    assert env["MAGPIE_AUTH_TOKENS_FILE"] == f"{AUTH_DIR}/callers.json"
    assert _secret_mount(container, spec, f"{AUTH_DIR}/callers.json") == "magpie-auth"
    (auth,) = [v for v in spec["volumes"] if v["name"] == "auth"]
    assert auth["secret"]["items"] == [{"key": "callers.json", "path": "callers.json"}]
    assert "MAGPIE_AUTH_TOKEN_FILE" not in env
    assert {k: env[k] for k in TLS_FILES} == TLS_FILES
    assert {_secret_mount(container, spec, path) for path in TLS_FILES.values()} == {
        values["tls"]["secretName"]
    }
    assert not {"MAGPIE_TLS_CLIENT_AUTH", "MAGPIE_REFLECTION_ENABLED", "MAGPIE_PORT"} & set(env)


def test_the_console_traces_every_page(render: Render) -> None:
    """People make few requests and each page links its trace: the console samples them all
    while the services keep the release's ratio (they follow the console's decision)."""
    objects = render("prod-values.yaml")
    (container,) = _console(objects)["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert float(str(_env(container)["OTEL_TRACES_SAMPLER_ARG"])) == 1.0
    ranking, _spec = _service_containers(objects)["ranking"]
    assert float(str(_env(ranking)["OTEL_TRACES_SAMPLER_ARG"])) == 0.1


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((), None),
        (("console-values.yaml",), "every browser is a writer"),
        (("prod-values.yaml",), "sign in with your own token"),
    ],
)
def test_notes_say_how_to_open_the_console(
    k8s_tools: Path, values: tuple[str, ...], expected: str | None
) -> None:
    args = ["install", "magpie", str(CHART), "--dry-run=client", "--namespace", "magpie"]
    for path in values:
        args += ["--values", str(CHART / "ci" / path)]
    notes = run_helm(k8s_tools, *args).stdout.split("NOTES:", 1)[1]
    forward = "kubectl -n magpie port-forward svc/magpie-console 8088:80"
    assert (forward in notes) == (expected is not None), notes
    if expected:
        assert "http://127.0.0.1:8088/" in notes and expected in notes, notes


# --- NetworkPolicies: default deny, then exactly the architecture's edges ------------------


def _expected_edges(case: str) -> set[tuple[str, str, int]]:
    edges = {
        ("ranking", "profiles", 50051),
        ("ranking", "retrieval", 50053),
        ("ranking", "catalog", 50052),
        ("ranking", "triton", 8001),
        ("retrieval", "profiles", 50051),
        ("worker", "triton", 8001),
    }
    edges |= {("test", name, port) for name, port in SERVICES.items()}
    if case in CONSOLE_CASES:
        edges |= {("console", name, port) for name, port in SERVICES.items()}
    return edges


def _peer_component(peer: dict[str, Any]) -> str | None:
    labels = peer.get("podSelector", {}).get("matchLabels", {})
    if (
        "namespaceSelector" in peer
        or "ipBlock" in peer
        or "app.kubernetes.io/instance" not in labels
    ):
        return None
    return str(labels.get(COMPONENT))


def _policy_edges(objects: list[Manifest]) -> tuple[set[Any], set[Any], set[Any], set[Any]]:
    """(internal ingress, internal egress, external ingress, external egress) edges."""
    ingress, egress, ext_in, ext_out = set(), set(), set(), set()
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        selected = policy["spec"]["podSelector"]["matchLabels"].get(COMPONENT, "*")
        for rule in policy["spec"].get("ingress", []):
            for peer in rule["from"]:
                for port in rule["ports"]:
                    source = _peer_component(peer)
                    (ingress if source else ext_in).add(
                        (source or "outside", selected, port["port"])
                    )
        for rule in policy["spec"].get("egress", []):
            for peer in rule["to"]:
                for port in rule["ports"]:
                    target = _peer_component(peer)
                    (egress if target else ext_out).add(
                        (selected, target or "outside", port["port"])
                    )
    return ingress, egress, ext_in, ext_out


def test_network_policies_select_every_pod(objects: list[Manifest]) -> None:
    deny = next(
        o
        for o in objects
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("default-deny")
    )
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    selector = deny["spec"]["podSelector"]["matchLabels"]
    for owner, _spec in _pod_specs(objects):
        template = (
            owner["spec"]["template"]["metadata"] if owner["kind"] != "Pod" else owner["metadata"]
        )
        assert selector.items() <= template["labels"].items(), owner["metadata"]["name"]


def test_network_policies_allow_exactly_the_architecture(
    objects: list[Manifest], case: str
) -> None:
    ingress, egress, ext_in, ext_out = _policy_edges(objects)
    assert ingress == egress == _expected_edges(case), case
    metrics = {(n, p + 1000) for n, p in SERVICES.items()} | {("triton", 8002), ("worker", 51060)}
    console = {("outside", "console", CONSOLE_PORT)} if case in CONSOLE_CASES else set()
    assert ext_in == (
        {("outside", "ranking", 50054), ("outside", "feedback", 50055)}
        | {("outside", n, p) for n, p in metrics}
        | console
    )
    db = {*SERVICES, "worker", "beat", "migrate", "trainer"}
    redis = {"profiles", "catalog", "feedback", "worker", "beat"}
    expected_out = {(c, "outside", 5432) for c in db} | {(c, "outside", 6379) for c in redis}
    expected_out |= {("*", "outside", 53), ("trainer", "outside", 53)}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    if case == "keda-rabbitmq":
        expected_out |= {(c, "outside", 5672) for c in ("worker", "beat", "feedback")}
    if case == "gpu-production":
        expected_out |= {
            ("worker", "outside", p) for p in values["networkPolicy"]["kubeApi"]["ports"]
        }
        collector = {*db, "triton", "console"}
        expected_out |= {(c, "outside", p) for c in collector for p in (4317, 4318)}
    assert ext_out == expected_out, sorted(ext_out ^ expected_out)


# --- Prometheus Adapter: the Triton queue-time rule computes what it claims ---------------


def _adapter_rules(objects: list[Manifest]) -> list[dict[str, Any]]:
    (config,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("adapter-rules")
    ]
    return list(yaml.safe_load(config["data"]["config.yaml"])["rules"])


def test_adapter_rules_match_the_metrics_the_processes_export(render: Render) -> None:
    from magpie.runtime import metrics

    exported = {c._name for c in vars(metrics).values() if hasattr(c, "_name")}
    for rule in _adapter_rules(render()):
        series = rule["seriesQuery"].split("{")[0]
        assert series.startswith("nv_") or series.removesuffix("_bucket").removesuffix(
            "_seconds"
        ) in {e.removesuffix("_seconds") for e in exported}, series
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
        assert "<<.LabelMatchers>>" in rule["metricsQuery"]


def test_triton_queue_time_is_the_mean_over_a_pods_requests(render: Render, tmp_path: Path) -> None:
    """promtool evaluates the adapter's query (as the adapter instantiates it for pods a and b)
    on Triton counters: pod a serves model m1 (1000 requests/min, 2 ms queue each) and also
    has an idle model m2 and an old version; pod b is idle. Averaging per-model ratios or
    dividing by 1 + requests would report less than 2000 us for a; an idle pod reads 0."""
    import shutil

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("PROMTOOL MISSING: install Debian's prometheus (tools/install-test-packages)")
    (rule,) = [
        r
        for r in _adapter_rules(render())
        if r["name"]["as"] == "magpie_triton_queue_us_per_request"
    ]
    query = (
        rule["metricsQuery"]
        .replace("<<.LabelMatchers>>", 'namespace="magpie",pod=~"a|b"')
        .replace("<<.GroupBy>>", "pod")
    )
    (tmp_path / "rules.yaml").write_text(
        yaml.safe_dump(
            {"groups": [{"name": "adapter", "rules": [{"record": "queue_us", "expr": query}]}]}
        )
    )
    labels = 'namespace="magpie",service="magpie-triton"'
    series = [
        {
            "series": f'nv_inference_queue_duration_us{{{labels},pod="a",model="m1",version="2"}}',
            "values": "0+2000000x10",
        },
        {
            "series": f'nv_inference_request_success{{{labels},pod="a",model="m1",version="2"}}',
            "values": "0+1000x10",
        },
        {
            "series": f'nv_inference_queue_duration_us{{{labels},pod="a",model="m1",version="1"}}',
            "values": "0+0x10",
        },
        {
            "series": f'nv_inference_request_success{{{labels},pod="a",model="m1",version="1"}}',
            "values": "0+0x10",
        },
        {
            "series": f'nv_inference_queue_duration_us{{{labels},pod="a",model="m2",version="1"}}',
            "values": "0+0x10",
        },
        {
            "series": f'nv_inference_request_success{{{labels},pod="a",model="m2",version="1"}}',
            "values": "0+0x10",
        },
        {
            "series": f'nv_inference_queue_duration_us{{{labels},pod="b",model="m1",version="2"}}',
            "values": "0+0x10",
        },
        {
            "series": f'nv_inference_request_success{{{labels},pod="b",model="m1",version="2"}}',
            "values": "0+0x10",
        },
    ]
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": "queue_us",
                        "eval_time": "5m",
                        "exp_samples": [
                            {"labels": 'queue_us{pod="a"}', "value": 2000},
                            {"labels": 'queue_us{pod="b"}', "value": 0},
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    done = subprocess.run(
        [promtool, "test", "rules", "test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- k8s/ is the chart, rendered --------------------------------------------------------


def test_k8s_manifests_equal_a_fresh_render(k8s_tools: Path) -> None:
    done = subprocess.run(
        [str(REPO / "tools" / "render-k8s"), "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_kustomize_builds_each_overlay_into_the_chart(k8s_tools: Path, overlay: str) -> None:
    built = subprocess.run(
        [str(k8s_tools / "kubectl"), "kustomize", f"k8s/overlays/{overlay}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    chart = subprocess.run(
        [str(REPO / "tools" / "render-k8s"), "--print", overlay],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    def by_name(text: str) -> dict[tuple[str, str], Manifest]:
        return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(text) if o}

    assert by_name(built.stdout) == by_name(chart.stdout)


def test_image_requirement_sets_follow_the_lock() -> None:
    import sys

    done = subprocess.run(
        [sys.executable, "images/lock.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    serving = (REPO / "images" / "serving.lock").read_text()
    for training_only in ("torch==", "sentence-transformers==", "onnx==", "optuna=="):
        assert f"\n{training_only}" not in serving
    for needed in ("onnxruntime==", "faiss-cpu==", "tritonclient=="):
        assert f"\n{needed}" in serving
