"""The ``train`` stage as a Kubernetes Job (``MAGPIE_RETRAIN_EXECUTOR=kubernetes``).

The worker does not train: :func:`train_on_kubernetes` makes sure the run's Job exists
and looks at it, and the Job's pod runs ``magpie retrain train-job RUN_ID``
(:func:`run_train_job`) on a GPU node, writing the bundle to the artifact volume that
the worker mounts too. The Job is named after the run (:func:`job_name`), so a worker
that died while the Job ran finds the same Job again instead of starting a second one.

API calls, all ``batch/v1`` Jobs in ``MAGPIE_K8S_NAMESPACE`` through the official
``kubernetes`` client (:class:`JobClient`): ``create_namespaced_job`` (a 409 Conflict
means the Job exists: ``read_namespaced_job`` instead), ``read_namespaced_job``,
``list_namespaced_job`` as a watch (``watch=true``, ``fieldSelector=metadata.name=...``,
``timeoutSeconds``) to see the Job leave ``running`` without sleeping, and
``delete_namespaced_job`` (``propagationPolicy=Background``) for people and tests; the
worker's ServiceAccount needs ``create, get, list, watch, delete`` on ``jobs`` there.

Failures are sorted in the Job itself (``podFailurePolicy``): a pod evicted or preempted
(condition ``DisruptionTarget``) is replaced without counting; a trainer that exits with
:data:`BUG_EXIT_CODE` fails the Job at once (a bug: retrying cannot help); any other pod
failure (a transient error, exit 1; the OOM killer, 137) counts against ``backoffLimit``.
The Job's ``Failed`` condition (reason and message) becomes the run's error.

Finished Jobs are not deleted by the worker: ``ttlSecondsAfterFinished`` has the
cluster's TTL controller remove them, after they stayed a while for ``kubectl logs``.
What only a real cluster adds: the scheduler and the GPU device plugin placing the pod
(``nvidia.com/gpu``, node selector, tolerations), the kubelet running the image under the
restricted security context, the eviction API and preemption setting
``DisruptionTarget``, ``activeDeadlineSeconds`` enforcement, the TTL controller, the
ReadWriteMany volume shared with the worker, and RBAC.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import psycopg2

from magpie.modelstore.lifecycle import connection
from magpie.modelstore.validate import validate_bundle
from magpie.retraining import runs, stages
from magpie.retraining.runs import Run
from magpie.runtime.errors import AlreadyExists, Unavailable
from magpie.runtime.settings import Settings

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, V1Job

__all__ = [
    "BUG_EXIT_CODE",
    "CONTAINER",
    "TRANSIENT_EXIT_CODE",
    "JobClient",
    "JobFailed",
    "JobState",
    "job_name",
    "run_train_job",
    "train_job",
    "train_on_kubernetes",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

BUG_EXIT_CODE = 3
"""Exit code of a trainer that failed in a way a retry cannot fix (a bug, bad data, an
invalid bundle): the Job's ``FailJob`` rule ends the Job at once."""
TRANSIENT_EXIT_CODE = 1
"""Exit code of a trainer that hit a dependency's failure: the pod is retried (counted
against ``backoffLimit``)."""
CONTAINER = "trainer"
"""Name of the training container (the ``FailJob`` rule names it)."""
RUN_ID_LABEL = "magpie.dev/run-id"
POLL_SECONDS = 10.0
"""How soon the worker looks at a running Job again (the Celery countdown)."""
WATCH_SECONDS = 5.0
"""How long one look watches the Job for it to finish (the task stays short)."""
_USER = 10001


class JobFailed(Exception):
    """The run's training Job failed; the message says why (its ``Failed`` condition)."""


@dataclass(frozen=True, slots=True)
class JobState:
    name: str
    phase: Literal["running", "succeeded", "failed"]
    reason: str = ""
    """For a finished Job, its ``Complete``/``Failed`` condition as ``reason: message``;
    for a running one, its pod counts."""
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    """Pod failures counted against ``backoffLimit`` (evictions are not counted)."""
    run_id: str = ""
    """The run the Job trains for (its ``magpie.dev/run-id`` label)."""


def job_name(run_id: str) -> str:
    """The Job of a run: ``magpie-train-`` and the first 8 hex digits of the run id."""
    return "magpie-train-" + run_id.replace("-", "").lower()[:8]


def _json_setting(settings: Settings, field: str, kind: type) -> Any:
    raw = getattr(settings, field)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"MAGPIE_{field.upper()} is not JSON: {error}") from error
    if not isinstance(value, kind):
        raise ValueError(f"MAGPIE_{field.upper()} must be a JSON {kind.__name__}, not {raw!r}")
    return value


def _resources(settings: Settings) -> dict[str, dict[str, str]]:
    """Requests and limits from ``k8s_train_resources`` (quantities as strings, as the API
    returns them), with ``nvidia.com/gpu`` in the limits when the Job asks for GPUs."""
    given = _json_setting(settings, "k8s_train_resources", dict)
    unknown = set(given) - {"requests", "limits"}
    if unknown:
        raise ValueError(f"MAGPIE_K8S_TRAIN_RESOURCES: unknown keys {sorted(unknown)}")
    resources = {kind: {str(k): str(v) for k, v in given.get(kind, {}).items()} for kind in given}
    if settings.k8s_train_gpus > 0:
        resources.setdefault("limits", {})["nvidia.com/gpu"] = str(settings.k8s_train_gpus)
    return resources


def train_job(settings: Settings, run: Run) -> dict[str, Any]:
    """The ``batch/v1`` Job that runs ``run``'s train stage (a JSON-serialisable dict)."""
    if not settings.k8s_train_image:
        raise ValueError("MAGPIE_K8S_TRAIN_IMAGE is not set: no image for the training Job")
    name = job_name(run.run_id)
    labels = {
        "app.kubernetes.io/name": "magpie",
        "app.kubernetes.io/component": "trainer",
        RUN_ID_LABEL: run.run_id,
    }
    env = [
        {"name": "MAGPIE_ARTIFACT_DIR", "value": settings.artifact_dir},
        {"name": "MAGPIE_MODEL_NAME", "value": settings.model_name},
        {"name": "HOME", "value": "/tmp"},  # the root filesystem is read-only
    ]
    if settings.retrain_pipeline:  # must be readable in the pod too (image or volume)
        env.append({"name": "MAGPIE_RETRAIN_PIPELINE", "value": settings.retrain_pipeline})
    if settings.data_dir:
        env.append({"name": "MAGPIE_DATA_DIR", "value": settings.data_dir})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.k8s_train_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["magpie", "retrain", "train-job", run.run_id],
        "env": env,
        "resources": _resources(settings),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if settings.k8s_env_secret:
        container["envFrom"] = [{"secretRef": {"name": settings.k8s_env_secret}}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if settings.k8s_artifact_claim:
        if not Path(settings.artifact_dir).is_absolute():
            raise ValueError(
                f"MAGPIE_ARTIFACT_DIR {settings.artifact_dir!r} must be an absolute path to be "
                "mounted in the training Job"
            )
        volumes.append(
            {
                "name": "artifacts",
                "persistentVolumeClaim": {"claimName": settings.k8s_artifact_claim},
            }
        )
        container["volumeMounts"].append({"name": "artifacts", "mountPath": settings.artifact_dir})
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # the trainer never talks to the API
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": _USER,
            "runAsGroup": _USER,
            "fsGroup": _USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    node_selector = _json_setting(settings, "k8s_node_selector", dict)
    if node_selector:
        pod_spec["nodeSelector"] = {str(k): str(v) for k, v in node_selector.items()}
    tolerations = _json_setting(settings, "k8s_tolerations", list)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": settings.k8s_namespace, "labels": labels},
        "spec": {
            "backoffLimit": settings.k8s_job_backoff_limit,
            "activeDeadlineSeconds": settings.k8s_job_deadline_seconds,
            "ttlSecondsAfterFinished": settings.k8s_job_ttl_seconds,
            "podFailurePolicy": {
                "rules": [
                    {  # evicted, preempted, node drained: a new pod, not counted
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                    {  # a bug: retrying cannot help
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": [BUG_EXIT_CODE],
                        },
                    },
                ]
            },
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def _state(job: V1Job) -> JobState:
    """A Job object as one of running/succeeded/failed (its terminal condition)."""
    name = (job.metadata.name if job.metadata else None) or ""
    labels = (job.metadata.labels if job.metadata else None) or {}
    status = job.status
    counts = {
        "active": (status.active or 0) if status else 0,
        "succeeded": (status.succeeded or 0) if status else 0,
        "failed": (status.failed or 0) if status else 0,
    }
    for condition in (status.conditions if status else None) or []:
        if condition.status != "True" or condition.type not in ("Complete", "Failed"):
            continue
        reason = ": ".join(part for part in (condition.reason, condition.message) if part)
        phase: Literal["succeeded", "failed"] = (
            "succeeded" if condition.type == "Complete" else "failed"
        )
        return JobState(
            name, phase, reason or condition.type, run_id=labels.get(RUN_ID_LABEL, ""), **counts
        )
    running = f"{counts['active']} pod(s) active, {counts['failed']} failed"
    return JobState(name, "running", running, run_id=labels.get(RUN_ID_LABEL, ""), **counts)


def _cluster_api_client() -> ApiClient:
    """An API client from the pod's ServiceAccount, or else from the kubeconfig."""
    from kubernetes import client, config

    loaders = cast(Any, config)  # the config loaders carry no annotations
    configuration = client.Configuration()
    try:
        loaders.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        loaders.load_kube_config(client_configuration=configuration)
    return client.ApiClient(configuration)


class JobClient:
    """The few ``batch/v1`` Job calls the train stage makes, in one namespace.

    Errors of the API server that a later try may not see (unreachable, 429, 5xx) raise
    :class:`Unavailable`, which the pipeline retries; the others raise the client's
    ``ApiException``."""

    def __init__(self, namespace: str, api_client: ApiClient | None = None) -> None:
        from kubernetes import client

        self.namespace = namespace
        self._api_client = api_client if api_client is not None else _cluster_api_client()
        self._api = client.BatchV1Api(self._api_client)

    @classmethod
    def for_settings(cls, settings: Settings) -> JobClient:
        return cls(settings.k8s_namespace)

    def close(self) -> None:
        cast(Any, self._api_client).close()

    def __enter__(self) -> JobClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, call: Callable[[], _T]) -> _T:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return call()
        except ApiException as error:
            if error.status is not None and (error.status == 429 or error.status >= 500):
                raise Unavailable(
                    f"Kubernetes API: {what}: {error.status} {error.reason}"
                ) from error
            raise
        except HTTPError as error:
            raise Unavailable(f"Kubernetes API unreachable: {what}: {error}") from error

    def ensure(self, manifest: Mapping[str, Any]) -> JobState:
        """Creates the Job, or (409: it exists, a restarted worker) reads the existing one.
        Raises ``AlreadyExists`` if a Job of that name belongs to another run."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        name = manifest["metadata"]["name"]
        body = client.V1Job.from_dict(dict(manifest))
        assert body is not None
        try:
            created = self._call(
                f"create Job {name}",
                lambda: self._api.create_namespaced_job(self.namespace, body),
            )
        except ApiException as error:
            if error.status != 409:
                raise
            state = self.status(name)
            wanted = manifest["metadata"].get("labels", {}).get(RUN_ID_LABEL, "")
            if wanted and state.run_id != wanted:
                raise AlreadyExists(
                    f"Job {self.namespace}/{name} belongs to run {state.run_id or '?'}, "
                    f"not {wanted}"
                ) from error
            return state
        logger.info("created Job %s/%s", self.namespace, name)
        return _state(created)

    def status(self, name: str) -> JobState:
        """The Job's state now; the client's ``ApiException`` (404) if there is none."""
        job = self._call(
            f"read Job {name}", lambda: self._api.read_namespaced_job(name, self.namespace)
        )
        return _state(job)

    def watch(self, name: str, timeout_seconds: float) -> JobState:
        """Watches the Job until it succeeds or fails, or ``timeout_seconds`` (at least 1)
        pass; returns its state then. Raises ``JobFailed`` if it is deleted meanwhile."""
        from kubernetes import watch

        seconds = max(1, round(timeout_seconds))
        watcher: Any = cast(Any, watch).Watch()  # kubernetes.watch carries no annotations
        latest: JobState | None = None

        def stream() -> JobState | None:
            nonlocal latest
            events = watcher.stream(
                self._api.list_namespaced_job,
                self.namespace,
                field_selector=f"metadata.name={name}",
                timeout_seconds=seconds,
                _request_timeout=seconds + 10,
            )
            try:
                for event in events:
                    if event["type"] == "DELETED":
                        raise JobFailed(f"Job {self.namespace}/{name} was deleted while it ran")
                    if event["type"] not in ("ADDED", "MODIFIED"):
                        continue
                    latest = _state(event["object"])
                    if latest.phase != "running":
                        return latest
                return None
            finally:
                events.close()  # ends the request now, not when the generator is collected

        try:
            finished = self._call(f"watch Job {name}", stream)
        finally:
            watcher.stop()
        if finished is not None:
            return finished
        return latest if latest is not None else self.status(name)

    def delete(self, name: str) -> bool:
        """Deletes the Job and (in the background) its pods; False if there was none."""
        from kubernetes.client.exceptions import ApiException

        try:
            self._call(
                f"delete Job {name}",
                lambda: self._api.delete_namespaced_job(
                    name, self.namespace, propagation_policy="Background"
                ),
            )
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True


def _job_outcome(
    state: JobState,
    namespace: str,
    bundle: Path,
    check_bundle: Callable[[Path], object],
    poll_seconds: float,
) -> dict[str, Any]:
    """The train stage's fields for a Job in ``state``; raises ``Pending`` while it runs
    and ``JobFailed`` (with the Job's reason) once it failed."""
    if state.phase == "running":
        raise stages.Pending(poll_seconds, f"Job {state.name} running ({state.reason})")
    if state.phase == "failed":
        bug = f"exit code {BUG_EXIT_CODE}" in state.reason
        hint = "the trainer hit an error a retry cannot fix; " if bug else ""
        raise JobFailed(
            f"Job {namespace}/{state.name} failed: {state.reason} "
            f"({hint}kubectl -n {namespace} logs job/{state.name})"
        )
    check_bundle(bundle)
    return {
        "progress": {
            "job": state.name,
            "job_pods_failed": state.failed,
            "bundle": str(bundle),
        }
    }


def train_on_kubernetes(
    ctx: stages.StageContext,
    client: JobClient | None = None,
    *,
    check_bundle: Callable[[Path], object] = validate_bundle,
    watch_seconds: float = WATCH_SECONDS,
    poll_seconds: float = POLL_SECONDS,
) -> dict[str, Any]:
    """The train stage when the executor is ``kubernetes``: ensures the run's Job exists,
    watches it for up to ``watch_seconds`` (0: only looks), and then raises ``Pending``
    (ask again in ``poll_seconds``) while it runs, ``JobFailed`` if it failed, or checks
    the bundle it wrote (``check_bundle``, by default :func:`validate_bundle`) and returns
    the run's progress. ``client`` defaults to one from the cluster's configuration."""
    settings, run = ctx.settings, ctx.run
    assert run.version is not None
    manifest = train_job(settings, run)
    name = manifest["metadata"]["name"]
    own = client is None
    jobs = JobClient.for_settings(settings) if client is None else client
    try:
        state = jobs.ensure(manifest)
        if state.phase == "running" and watch_seconds > 0:
            state = jobs.watch(name, watch_seconds)
    finally:
        if own:
            jobs.close()
    bundle = Path(settings.artifact_dir) / str(run.version)
    return _job_outcome(state, jobs.namespace, bundle, check_bundle, poll_seconds)


def run_train_job(settings: Settings, run_id: str) -> int:
    """``magpie retrain train-job RUN_ID``, the training Job's command: runs the run's
    train stage here (the worker holds the lease and watches the Job). Returns the exit
    code: 0 done, :data:`TRANSIENT_EXIT_CODE` on a dependency's failure (the pod is
    retried), :data:`BUG_EXIT_CODE` on any other error (the Job fails at once)."""
    from magpie.retraining.pipeline import TRANSIENT_ERRORS

    def report(progress: Mapping[str, Any]) -> None:
        try:
            with connection(settings) as conn:
                runs.update_progress(conn, run_id, progress)
        except psycopg2.Error as error:
            logger.warning("run %s: progress not recorded: %s", run_id, error)

    try:
        with connection(settings) as conn:
            run = runs.get_run(conn, run_id)
        if run.status != "running":
            logger.error("run %s is %s: not training for it", run_id, run.status)
            return BUG_EXIT_CODE
        if run.stage != "train":
            if runs.STAGES.index(run.stage) > runs.STAGES.index("train"):
                logger.info("run %s is past training (%s): nothing to do", run_id, run.stage)
                return 0
            logger.error("run %s is at %s, not train: not training for it", run_id, run.stage)
            return BUG_EXIT_CODE
        fields = stages.train(stages.StageContext(settings, run, report))
        report(fields.get("progress", {}))
    except TRANSIENT_ERRORS:
        logger.exception("run %s: training hit a transient error (the pod is retried)", run_id)
        return TRANSIENT_EXIT_CODE
    except Exception:
        logger.exception("run %s: training failed (the Job fails)", run_id)
        return BUG_EXIT_CODE
    logger.info("run %s: training done", run_id)
    return 0
