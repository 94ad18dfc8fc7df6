"""A local fake of the part of the Kubernetes API that ``magpie.retraining.jobs`` uses.

It speaks HTTP/1.1 JSON like the API server, for ``batch/v1`` Jobs only:

- ``POST   /apis/batch/v1/namespaces/NS/jobs``: 201 with the stored Job (uid,
  resourceVersion, creationTimestamp, the defaults the server adds); 409 ``AlreadyExists``
  Status when the name is taken; 422 ``Invalid`` when the body does not validate against
  the Kubernetes JSON schema (``kubernetes_validate``, strict) of ``schema_version``.
- ``GET    /apis/batch/v1/namespaces/NS/jobs/NAME``: the Job, or a 404 ``NotFound`` Status.
- ``GET    /apis/batch/v1/namespaces/NS/jobs``: a JobList; with ``watch=true`` a chunked
  stream of newline-delimited watch events (ADDED for what exists when no
  ``resourceVersion`` is given, then ADDED/MODIFIED/DELETED), honouring
  ``fieldSelector=metadata.name=...`` and ``timeoutSeconds``.
- ``DELETE /apis/batch/v1/namespaces/NS/jobs/NAME``: a ``Success`` Status; the pods go
  too (what ``propagationPolicy=Background`` asks the garbage collector for).

Its controller stands in for the Job controller and the kubelet: each pod of a Job is a
local subprocess running the command the test chooses (``pod_command``), its stdin a pipe
(:meth:`FakeKube.send`), its exit code the container's (a signal ``n`` is ``128 + n``).
Status moves as the real controller's does: ``startTime``, ``active``/``ready`` while a
pod runs, ``succeeded`` with ``SuccessCriteriaMet`` and ``Complete`` conditions, or
``failed`` counts and ``FailureTarget`` and ``Failed`` conditions (reasons
``PodFailurePolicy``, ``BackoffLimitExceeded``, ``DeadlineExceeded``, the controller's
messages). The Job's own ``podFailurePolicy`` rules are evaluated in order against each
failed pod (``onExitCodes`` In/NotIn with ``containerName``, ``onPodConditions``;
actions ``Ignore``, ``FailJob``, ``Count``), unmatched failures count against
``backoffLimit``, and ``activeDeadlineSeconds`` is enforced. :meth:`FakeKube.evict` is
the eviction API: the pod gets a ``DisruptionTarget`` condition and is killed.

Not modelled: scheduling, images, resources and GPUs, volumes, security contexts, the
pod-replacement backoff delay (10 s, 20 s, ...), the TTL controller, authentication and
RBAC, resourceVersion expiry (410 Gone), bookmarks, and every other resource.
"""

from __future__ import annotations

import copy
import datetime
import http.server
import json
import os
import re
import secrets as random_names
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate

_JOBS = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs$")
_JOB = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs/([^/]+)$")

PodCommand = Callable[[Mapping[str, Any], int], Sequence[str]]
"""Given the Job (as stored) and the pod's index (0 for the first pod, 1 for its
replacement, ...), the command that pod runs instead of the container's."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> Any:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = dict(details)
    return body


@dataclass
class Pod:
    """One pod of a Job: the subprocess standing in for its container."""

    name: str
    index: int
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    exit_code: int | None = None
    conditions: list[dict[str, str]] = field(default_factory=list)
    action: str | None = None
    """The podFailurePolicy action applied when it failed (Ignore, FailJob, Count), or
    "Count" for a failure no rule matched."""

    @property
    def disrupted(self) -> bool:
        return any(
            c["type"] == "DisruptionTarget" and c["status"] == "True" for c in self.conditions
        )


@dataclass
class _Stored:
    job: dict[str, Any]
    pods: list[Pod] = field(default_factory=list)
    deleted: bool = False
    started: float | None = None


class FakeKube:
    """The fake API server and its controller; ``with FakeKube(workdir) as kube:``."""

    def __init__(
        self,
        workdir: Path,
        pod_command: PodCommand | None = None,
        secrets: Mapping[str, Mapping[str, str]] | None = None,
        schema_version: str = "1.29",
    ) -> None:
        self.workdir = workdir
        self.pod_command = pod_command
        """None runs the container's own command (as a real cluster would)."""
        self.secrets = {name: dict(data) for name, data in (secrets or {}).items()}
        self.schema_version = schema_version
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        """(method, path, query) of every request, in order."""
        self.creates: list[tuple[str, int]] = []
        """(name, HTTP status) of every create."""
        self.deletes: list[tuple[str, str | None]] = []
        """(name, propagationPolicy) of every delete that found its Job."""
        self.received: list[dict[str, Any]] = []
        """The body of every create, as it came over the wire."""
        self.watches = 0
        """Watches started (each counted once its initial events are fixed)."""
        self._lock = threading.Condition(threading.RLock())
        self._jobs: dict[tuple[str, str], _Stored] = {}
        self._events: list[tuple[int, str, str, dict[str, Any]]] = []
        self._version = 0
        self._stopping = False
        self._controllers: list[threading.Thread] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeKube:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            for stored in self._jobs.values():
                for pod in stored.pods:
                    _kill(pod)
            self._lock.notify_all()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._controllers:
            thread.join(timeout=10)

    # -- what a test looks at and does ------------------------------------------------

    def job(self, name: str, namespace: str = "magpie") -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._jobs[(namespace, name)].job)

    def pods(self, name: str, namespace: str = "magpie") -> list[Pod]:
        with self._lock:
            stored = self._jobs.get((namespace, name))
            return list(stored.pods) if stored else []

    def running_pod(self, name: str, namespace: str = "magpie") -> Pod | None:
        with self._lock:
            pods = self.pods(name, namespace)
            return pods[-1] if pods and pods[-1].exit_code is None else None

    def wait_until(self, predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
        """Blocks until ``predicate()`` holds (it is evaluated on every state change)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
                self._lock.wait(remaining)

    def wait_for_pod(self, name: str, index: int, namespace: str = "magpie") -> Pod:
        """The Job's pod number ``index`` once it runs."""
        self.wait_until(
            lambda: (
                len(self.pods(name, namespace)) > index
                and self.pods(name, namespace)[index].process is not None
            ),
            f"pod {index} of Job {name}",
        )
        return self.pods(name, namespace)[index]

    def send(self, name: str, text: str, namespace: str = "magpie") -> None:
        """Writes ``text`` to the stdin of the Job's running pod."""
        pod = self.running_pod(name, namespace)
        assert pod is not None and pod.process is not None and pod.process.stdin is not None
        pod.process.stdin.write(text.encode())
        pod.process.stdin.flush()

    def evict(self, name: str, namespace: str = "magpie") -> Pod:
        """The eviction API on the Job's running pod: a ``DisruptionTarget`` condition,
        then the container is killed."""
        with self._lock:
            pod = self.running_pod(name, namespace)
            assert pod is not None, f"Job {name} has no running pod to evict"
            pod.conditions.append(
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "EvictionByEvictionAPI",
                    "message": "Eviction API: evicting",
                    "lastTransitionTime": _now(),
                }
            )
            _kill(pod)
            return pod

    # -- the API ----------------------------------------------------------------------

    def _bump(self, kind: str, namespace: str, job: dict[str, Any]) -> None:
        """Records a change (under the lock): a new resourceVersion and a watch event."""
        self._version += 1
        job["metadata"]["resourceVersion"] = str(self._version)
        self._events.append((self._version, kind, namespace, copy.deepcopy(job)))
        self._lock.notify_all()

    def create(self, namespace: str, body: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            self.received.append(copy.deepcopy(body))
        meta = body.get("metadata") or {}
        name = meta.get("name")
        if body.get("kind") != "Job" or body.get("apiVersion") != "batch/v1" or not name:
            return 400, _status(400, "BadRequest", "expected a batch/v1 Job with a name")
        if meta.get("namespace", namespace) != namespace:
            message = (
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
            return 400, _status(400, "BadRequest", message)
        try:
            kubernetes_validate.validate(body, self.schema_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            message = f'Job.batch "{name}" is invalid: {path}: {error.message}'
            return 422, _status(
                422, "Invalid", message, {"name": name, "group": "batch", "kind": "jobs"}
            )
        with self._lock:
            if (namespace, name) in self._jobs:
                self.creates.append((name, 409))
                message = f'jobs.batch "{name}" already exists'
                details = {"name": name, "group": "batch", "kind": "jobs"}
                return 409, _status(409, "AlreadyExists", message, details)
            job = _defaulted(copy.deepcopy(body), namespace)
            self._jobs[(namespace, name)] = _Stored(job)
            self.creates.append((name, 201))
            self._bump("ADDED", namespace, job)
            controller = threading.Thread(
                target=self._control, args=(namespace, name), name=f"job-{name}", daemon=True
            )
            self._controllers.append(controller)
            controller.start()
            return 201, copy.deepcopy(job)

    def read(self, namespace: str, name: str) -> tuple[int, Any]:
        with self._lock:
            stored = self._jobs.get((namespace, name))
            if stored is None:
                return 404, _not_found(name)
            return 200, copy.deepcopy(stored.job)

    def delete(self, namespace: str, name: str, policy: str | None) -> tuple[int, Any]:
        with self._lock:
            stored = self._jobs.pop((namespace, name), None)
            if stored is None:
                return 404, _not_found(name)
            stored.deleted = True
            self.deletes.append((name, policy))
            for pod in stored.pods:  # the garbage collector deletes the Job's pods
                _kill(pod)
            stored.job["metadata"]["deletionTimestamp"] = _now()
            self._bump("DELETED", namespace, stored.job)
            details = {
                "name": name,
                "group": "batch",
                "kind": "jobs",
                "uid": stored.job["metadata"]["uid"],
            }
            return 200, _status(200, "", "", details)

    def list_jobs(self, namespace: str, name: str | None) -> tuple[int, Any]:
        with self._lock:
            items = [
                copy.deepcopy(s.job)
                for (ns, n), s in sorted(self._jobs.items())
                if ns == namespace and (name is None or n == name)
            ]
            for item in items:  # list items carry no kind/apiVersion
                item.pop("kind", None)
                item.pop("apiVersion", None)
            meta = {"resourceVersion": str(self._version)}
            return 200, {
                "kind": "JobList",
                "apiVersion": "batch/v1",
                "metadata": meta,
                "items": items,
            }

    def watch(
        self, namespace: str, name: str | None, since: str | None, timeout: float
    ) -> Iterator[dict[str, Any]]:
        """Watch events for the namespace's Jobs (only ``name``'s if given) until
        ``timeout`` seconds pass or the server stops."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if since in (None, "", "0"):
                start = self._version
                initial = [
                    {"type": "ADDED", "object": copy.deepcopy(s.job)}
                    for (ns, n), s in sorted(self._jobs.items())
                    if ns == namespace and (name is None or n == name)
                ]
            else:
                start, initial = int(since), []
            self.watches += 1
            self._lock.notify_all()
        yield from initial
        position = start
        while True:
            with self._lock:
                pending = [
                    {"type": kind, "object": copy.deepcopy(obj)}
                    for version, kind, ns, obj in self._events
                    if version > position
                    and ns == namespace
                    and (name is None or obj["metadata"]["name"] == name)
                ]
                position = self._version
                if not pending:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._stopping:
                        return
                    self._lock.wait(remaining)
                    continue
            yield from pending

    # -- the controller ---------------------------------------------------------------

    def _control(self, namespace: str, name: str) -> None:
        index = 0
        while self._run_pod(namespace, name, index):
            index += 1

    def _run_pod(self, namespace: str, name: str, index: int) -> bool:
        """Runs pod ``index`` of the Job to its end and applies the outcome; True when
        the Job needs another pod."""
        with self._lock:
            stored = self._jobs.get((namespace, name))
            if stored is None or stored.deleted or self._stopping:
                return False
            job = stored.job
            container = job["spec"]["template"]["spec"]["containers"][0]
            command = (
                list(self.pod_command(copy.deepcopy(job), index))
                if self.pod_command is not None
                else list(container.get("command", [])) + list(container.get("args", []))
            )
            pod = Pod(f"{name}-{random_names.token_hex(3)[:5]}", index, command)
            pod.log = self.workdir / f"{pod.name}.log"
            env = self._env(container)
            with pod.log.open("wb") as log:
                pod.process = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.workdir,
                )
            stored.pods.append(pod)
            status = job["status"]
            if stored.started is None:
                stored.started = time.monotonic()
                status["startTime"] = _now()
            status.update(active=1, ready=1, terminating=0)
            status.setdefault("uncountedTerminatedPods", {})
            self._bump("MODIFIED", namespace, job)
            deadline = job["spec"].get("activeDeadlineSeconds")
            remaining = None if deadline is None else stored.started + deadline - time.monotonic()
        try:
            code = pod.process.wait(timeout=None if remaining is None else max(remaining, 0))
            expired = False
        except subprocess.TimeoutExpired:
            _kill(pod)
            code = pod.process.wait()
            expired = True
        if pod.process.stdin is not None:
            pod.process.stdin.close()
        with self._lock:
            pod.exit_code = 128 - code if code < 0 else code  # -9 (SIGKILL) is 137
            if stored.deleted or self._stopping:
                return False
            status = job["status"]
            status.update(active=0, ready=0)
            if expired:
                status["failed"] = status.get("failed", 0) + 1
                self._finish(
                    namespace,
                    job,
                    "Failed",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                )
                return False
            if pod.exit_code == 0:
                status["succeeded"] = 1
                status["completionTime"] = _now()
                self._finish(
                    namespace,
                    job,
                    "Complete",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                )
                return False
            action, message = _match_policy(job, pod, namespace)
            pod.action = action
            if action == "Ignore":
                self._bump("MODIFIED", namespace, job)
                return True
            status["failed"] = status.get("failed", 0) + 1
            if action == "FailJob":
                self._finish(namespace, job, "Failed", "PodFailurePolicy", message)
                return False
            if status["failed"] > job["spec"].get("backoffLimit", 6):
                self._finish(
                    namespace,
                    job,
                    "Failed",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                )
                return False
            self._bump("MODIFIED", namespace, job)
            return True

    def _finish(
        self, namespace: str, job: dict[str, Any], kind: str, reason: str, message: str
    ) -> None:
        """The terminal conditions, as the controller sets them since Kubernetes 1.31."""
        first = "SuccessCriteriaMet" if kind == "Complete" else "FailureTarget"
        now = _now()
        job["status"]["conditions"] = [
            {
                "type": t,
                "status": "True",
                "reason": reason,
                "message": message,
                "lastProbeTime": now,
                "lastTransitionTime": now,
            }
            for t in (first, kind)
        ]
        self._bump("MODIFIED", namespace, job)

    def _env(self, container: Mapping[str, Any]) -> dict[str, str]:
        """The container's environment: the test process's (less MAGPIE_*, which
        ``load_settings`` would reject unknown), then envFrom Secrets, then env values."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAGPIE_")}
        for source in container.get("envFrom", []):
            ref = source.get("secretRef")
            if ref is not None:
                env.update(self.secrets.get(ref["name"], {}))
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = variable["value"]
        return env


def _kill(pod: Pod) -> None:
    if pod.process is not None and pod.process.poll() is None:
        pod.process.send_signal(signal.SIGKILL)


def _not_found(name: str) -> Any:
    return _status(
        404,
        "NotFound",
        f'jobs.batch "{name}" not found',
        {"name": name, "group": "batch", "kind": "jobs"},
    )


def _defaulted(job: dict[str, Any], namespace: str) -> dict[str, Any]:
    """What the API server stores for a created Job: identity and the defaults."""
    meta = job["metadata"]
    uid = str(uuid.uuid4())
    meta.update(namespace=namespace, uid=uid, generation=1, creationTimestamp=_now())
    spec = job["spec"]
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if "podFailurePolicy" in spec:
        spec.setdefault("podReplacementPolicy", "Failed")
        for rule in spec["podFailurePolicy"]["rules"]:
            for condition in rule.get("onPodConditions", []):
                condition.setdefault("status", "True")
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    template_meta = spec["template"].setdefault("metadata", {})
    template_meta.setdefault("labels", {}).update(
        {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": meta["name"],
            "controller-uid": uid,
            "job-name": meta["name"],
        }
    )
    job["status"] = {}
    return job


def _match_policy(job: Mapping[str, Any], pod: Pod, namespace: str) -> tuple[str, str]:
    """The action of the first podFailurePolicy rule matching the failed ``pod`` (the
    Job controller's order), or "Count" when none matches; with the controller's message
    for it."""
    container = job["spec"]["template"]["spec"]["containers"][0]["name"]
    code = pod.exit_code
    rules = (job["spec"].get("podFailurePolicy") or {}).get("rules", [])
    for index, rule in enumerate(rules):
        on_codes = rule.get("onExitCodes")
        if on_codes is not None:
            if on_codes.get("containerName") not in (None, container) or code in (None, 0):
                continue
            inside = code in on_codes["values"]
            if inside == (on_codes["operator"] == "In"):
                message = (
                    f"Container {container} for pod {namespace}/{pod.name} failed with exit code "
                    f"{code} matching {rule['action']} rule at index {index}"
                )
                return rule["action"], message
            continue
        for wanted in rule.get("onPodConditions", []):
            if any(
                c["type"] == wanted["type"] and c["status"] == wanted.get("status", "True")
                for c in pod.conditions
            ):
                message = (
                    f"Pod {namespace}/{pod.name} has condition {wanted['type']} matching "
                    f"{rule['action']} rule at index {index}"
                )
                return rule["action"], message
    return "Count", ""


def _handler(kube: FakeKube) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet

        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw else None

        def _route(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            kube.requests.append((method, parts.path, query))
            body = self._body()
            one = _JOB.match(parts.path)
            many = _JOBS.match(parts.path)
            if method == "POST" and many:
                self._send(*kube.create(many.group(1), body or {}))
            elif method == "GET" and one:
                self._send(*kube.read(one.group(1), one.group(2)))
            elif method == "DELETE" and one:
                policy = query.get("propagationPolicy", [None])[0] or (body or {}).get(
                    "propagationPolicy"
                )
                self._send(*kube.delete(one.group(1), one.group(2), policy))
            elif method == "GET" and many:
                self._list(many.group(1), query)
            else:
                self._send(
                    404,
                    _status(404, "NotFound", "the server could not find the requested resource"),
                )

        def _list(self, namespace: str, query: Mapping[str, list[str]]) -> None:
            name = None
            for selector in query.get("fieldSelector", [""])[0].split(","):
                if not selector:
                    continue
                match = re.fullmatch(r"metadata\.name==?(.+)", selector)
                if match is None:
                    message = f'field label not supported: "{selector.split("=")[0]}"'
                    self._send(400, _status(400, "BadRequest", message))
                    return
                name = match.group(1)
            if query.get("watch", ["false"])[0] not in ("true", "1"):
                self._send(*kube.list_jobs(namespace, name))
                return
            timeout = float(query.get("timeoutSeconds", ["1800"])[0])
            since = query.get("resourceVersion", [None])[0]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for event in kube.watch(namespace, name, since, timeout):
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(f"{len(line):X}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_DELETE(self) -> None:
            self._route("DELETE")

    return Handler
