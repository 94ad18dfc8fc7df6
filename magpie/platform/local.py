"""`magpie up` / `magpie down`: the whole platform as local processes on loopback.

Uses the machine's PostgreSQL and Redis when they answer on their standard
ports; otherwise starts an embedded PostgreSQL (pgserver) in the state
directory and runs without a Redis cache. Each service runs as
`python -m services.<name>`, Triton as the `tritonserver` binary from the
nvidia-pytriton wheel, the web console (on request) as `python -m services.console`;
pids and logs live in the state directory. Tests and benchmarks use the same class
with their own ports, database and directories.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psycopg2
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from magpie.modelstore import tritonserver
from magpie.modelstore.publish import published_versions
from magpie.modelstore.tritonserver import TritonPorts
from magpie.platform.traces import TraceTargets
from magpie.runtime import schema
from magpie.runtime.metrics import WORKER_METRICS_PORT
from magpie.runtime.settings import CONSOLE_PORT, ENV_PREFIX, SERVICE_PORTS, TRITON_RANKER

__all__ = [
    "CONSOLE",
    "SERVICES",
    "WORKERS",
    "LocalPlatform",
    "PlatformLayout",
    "available_services",
    "console_available",
    "console_settings",
    "free_port",
    "isolated_layout",
    "wait_http",
    "wait_serving",
]

logger = logging.getLogger(__name__)

SERVICES = tuple(SERVICE_PORTS)
"""Every Magpie service, in start order."""

TRITON = "triton"
TRACES = "traces"
"""The local trace receiver (`magpie up --trace`)."""
WORKERS = ("worker", "beat")
"""The retraining worker and its scheduler (`python -m services.worker worker|beat`)."""
CONSOLE = "console"
"""The web console (`python -m services.console`), started on request after the services."""
MACHINE_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
MACHINE_REDIS = "redis://127.0.0.1:6379/0"
DATABASE_NAME = "magpie"
SOURCE_ROOT = Path(__file__).resolve().parents[2]
"""The checkout: services run from its ``services/`` as ``python -m services.<name>``."""
REPOSITORY = SOURCE_ROOT / "model_repository"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available_services() -> list[str]:
    """Services whose package exists in this checkout."""
    root = SOURCE_ROOT / "services"
    return [n for n in SERVICES if (root / n / "server.py").exists()]


def console_available() -> bool:
    """Whether this checkout has the web console."""
    return (SOURCE_ROOT / "services" / CONSOLE / "__main__.py").exists()


def _postgres_reachable(url: str) -> bool:
    try:
        psycopg2.connect(url, connect_timeout=2).close()
    except psycopg2.OperationalError:
        return False
    return True


def _redis_reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def wait_serving(address: str, timeout: float) -> bool:
    """Polls grpc.health.v1 Check until SERVING or the timeout."""
    give_up = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < give_up:
            with contextlib.suppress(grpc.RpcError):
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            time.sleep(0.2)
    return False


def wait_http(url: str, timeout: float) -> bool:
    """Polls an HTTP GET of `url` (never through a proxy) until it answers 200 or the
    timeout."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        try:
            with opener.open(url, timeout=1) as reply:
                if reply.status == 200:
                    return True
        except urllib.error.HTTPError as error:  # an answer, not yet 200: close it
            error.close()
        except OSError:  # nothing listening yet
            pass
        time.sleep(0.2)
    return False


@dataclass(frozen=True)
class PlatformLayout:
    """Where a local platform keeps its state and which ports it uses."""

    state_dir: Path
    ports: Mapping[str, int] = field(default_factory=lambda: dict(SERVICE_PORTS))
    triton: TritonPorts = field(default_factory=TritonPorts)
    model_repository: Path = REPOSITORY
    triton_model: str = TRITON_RANKER
    metrics_ports: Mapping[str, int] = field(
        default_factory=lambda: {
            **{n: p + 1000 for n, p in SERVICE_PORTS.items()},
            "worker": WORKER_METRICS_PORT,
        }
    )
    """Each process's Prometheus /metrics port."""
    console_port: int = CONSOLE_PORT
    """HTTP port of the web console."""

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.console_port}/"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def artifact_dir(self) -> Path:
        return self.state_dir / "artifacts"

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"


def isolated_layout(state_dir: Path) -> PlatformLayout:
    """Free ports and a private copy of the model repository: a platform for a test or a
    benchmark that cannot collide with `magpie up` or with another run."""
    repository = state_dir / "model_repository"
    shutil.copytree(REPOSITORY, repository, ignore=shutil.ignore_patterns("[0-9]*"))
    return PlatformLayout(
        state_dir=state_dir,
        ports={name: free_port() for name in SERVICES},
        triton=TritonPorts(free_port(), free_port(), free_port()),
        model_repository=repository,
        metrics_ports={name: free_port() for name in (*SERVICES, "worker")},
        console_port=free_port(),
    )


def console_settings(layout: PlatformLayout) -> dict[str, str]:
    """The MAGPIE_* settings of a local platform's console beyond the services' own: its
    port and, as the local platform runs without authentication, every browser a writer
    (may send feedback)."""
    return {
        "MAGPIE_CONSOLE_PORT": str(layout.console_port),
        "MAGPIE_CONSOLE_OPEN_ROLE": "writer",
    }


class LocalPlatform:
    def __init__(
        self,
        layout: PlatformLayout,
        *,
        database_url: str | None = None,
        redis_url: str | None = None,
        settings: Mapping[str, str] | None = None,
        tracing: TraceTargets | None = None,
    ) -> None:
        """`database_url`/`redis_url` default to the machine's (or embedded) servers;
        `settings` are extra MAGPIE_* values for every service; `tracing` is where every
        process (Triton included) sends its spans."""
        self.layout = layout
        self._database_url = database_url
        self._redis_url = redis_url
        self._settings = dict(settings or {})
        self.tracing = tracing
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        """Processes this object started (a later `magpie down` finds them by pid file)."""

    @property
    def database_url(self) -> str:
        if self._database_url is None:
            self._database_url = self._find_database()
        return self._database_url

    def _find_database(self) -> str:
        if _postgres_reachable(MACHINE_POSTGRES):
            return MACHINE_POSTGRES.rsplit("/", 1)[0] + f"/{DATABASE_NAME}"
        from pgserver.postgres_server import get_server  # only without a PostgreSQL

        logger.info("no PostgreSQL on 127.0.0.1:5432; starting an embedded one")
        server = get_server(self.layout.state_dir / "pgdata", cleanup_mode=None)
        return str(server.get_uri(DATABASE_NAME))

    @property
    def redis_url(self) -> str:
        if self._redis_url is None:
            self._redis_url = MACHINE_REDIS if _redis_reachable(MACHINE_REDIS) else ""
            if not self._redis_url:
                logger.warning("no Redis on 127.0.0.1:6379; services run without a cache")
        return self._redis_url

    def service_settings(self) -> dict[str, str]:
        """The MAGPIE_* settings every service of this platform runs with."""
        layout = self.layout
        return {
            "MAGPIE_DATABASE_URL": self.database_url,
            "MAGPIE_REDIS_URL": self.redis_url,
            "MAGPIE_ARTIFACT_DIR": str(layout.artifact_dir.resolve()),
            "MAGPIE_MODEL_REPOSITORY": str(layout.model_repository.resolve()),
            "MAGPIE_TRITON_ADDR": f"127.0.0.1:{layout.triton.grpc}",
            "MAGPIE_TRITON_MODEL": layout.triton_model,
            **self._broker_settings(),
            **{f"MAGPIE_{n.upper()}_ADDR": layout.address(n) for n in layout.ports},
            **self._settings,
        }

    def _broker_settings(self) -> dict[str, str]:
        """The retraining worker's broker and result backend: two databases of the Redis
        the caches use (none without Redis: then no worker runs)."""
        if not self.redis_url:
            return {}
        base = self.redis_url.rsplit("/", 1)[0]
        return {"MAGPIE_BROKER_URL": f"{base}/1", "MAGPIE_RESULT_BACKEND": f"{base}/2"}

    @property
    def can_run_workers(self) -> bool:
        """Whether there is a broker for the retraining worker (the machine's Redis)."""
        return bool(self.redis_url)

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        tracing = self._tracing()
        if tracing is not None:
            env.update(tracing.environment())
        return {**env, **self.service_settings()}

    def _tracing(self) -> TraceTargets | None:
        """Where spans go: as asked, or to the local receiver if one is running."""
        if self.tracing is None and self._pid(TRACES) is not None:
            self.tracing = TraceTargets.local()
        return self.tracing

    @property
    def trace_file(self) -> Path:
        """What the local receiver (``magpie up --trace``) received, one span per line."""
        return self.layout.state_dir / "traces.jsonl"

    def start_trace_receiver(self) -> TraceTargets:
        """The local OTLP receiver as a platform process (`magpie up --trace`)."""
        if self._pid(TRACES) is None:
            command = [
                sys.executable,
                "-m",
                "magpie.platform.traces",
                "--out",
                str(self.trace_file),
            ]
            self._spawn(TRACES, command, {k: v for k, v in os.environ.items()})
            time.sleep(1.0)
            if self._pid(TRACES) is None:
                raise RuntimeError(f"the trace receiver exited; see {self._log(TRACES)}")
        self.tracing = TraceTargets.local()
        return self.tracing

    def up(
        self,
        services: list[str],
        timeout: float = 60.0,
        settings: Mapping[str, str] | None = None,
        workers: bool = False,
    ) -> dict[str, str]:
        """Migrates, starts Triton (for ranking), `services` and, with ``workers``, the
        retraining worker and beat (all with extra MAGPIE_* ``settings`` for these processes
        only); returns name -> address (the broker's, for the workers)."""
        layout = self.layout
        self._make_directories()
        schema.ensure_database(self.database_url)
        schema.upgrade(self.database_url)
        env = {**self._environment(), **(settings or {})}
        if "ranking" in services and self._pid(TRITON) is None:
            self._start_triton(env)
        for name in services:
            if self._pid(name) is not None:
                logger.info("%s already running", name)
                continue
            command = [sys.executable, "-m", f"services.{name}"]
            ports = {"MAGPIE_PORT": str(layout.ports[name])}
            ports["MAGPIE_METRICS_PORT"] = str(layout.metrics_ports[name])
            self._spawn(name, command, {**env, **ports}, cwd=SOURCE_ROOT)
        started = {name: layout.address(name) for name in services}
        for name, address in started.items():
            if not wait_serving(address, timeout):
                raise RuntimeError(f"{name} did not become SERVING; see {self._log(name)}")
        if workers:
            for role in WORKERS:
                if self._pid(role) is None:
                    command = [sys.executable, "-m", "services.worker", role]
                    metrics = {"MAGPIE_METRICS_PORT": str(layout.metrics_ports["worker"])}
                    self._spawn(role, command, {**env, **metrics}, cwd=SOURCE_ROOT)
            time.sleep(2.0)  # a worker that cannot start (bad settings, no broker) exits at once
            for role in WORKERS:
                if self._pid(role) is None:
                    raise RuntimeError(f"{role} exited at start; see {self._log(role)}")
                started[role] = env.get(ENV_PREFIX + "BROKER_URL", "")
        if self._pid(TRITON) is not None:
            tritonserver.wait_ready(f"127.0.0.1:{layout.triton.http}", timeout=timeout)
            started[TRITON] = f"127.0.0.1:{layout.triton.grpc}"
        return started

    def start_console(
        self, timeout: float = 30.0, settings: Mapping[str, str] | None = None
    ) -> str:
        """Starts the web console unless it runs (after `up`: it calls the services) with
        :func:`console_settings` and extra MAGPIE_* ``settings`` (e.g. a tokens file), waits
        for its /healthz; returns its address."""
        self._make_directories()
        if self._pid(CONSOLE) is None:
            env = {**self._environment(), **console_settings(self.layout), **(settings or {})}
            command = [sys.executable, "-m", f"services.{CONSOLE}"]
            self._spawn(CONSOLE, command, env, cwd=SOURCE_ROOT)
        url = self.layout.console_url
        if not wait_http(url + "healthz", timeout):
            raise RuntimeError(f"the console did not answer at {url}; see {self._log(CONSOLE)}")
        return url

    def _make_directories(self) -> None:
        layout = self.layout
        for directory in (layout.run_dir, layout.log_dir, layout.artifact_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def _start_triton(self, env: dict[str, str]) -> None:
        layout = self.layout
        backends = tritonserver.prepare_backends(layout.state_dir / "triton")
        # Explicit model control loads nothing by itself: name the ranker once it has versions.
        published = published_versions(layout.model_repository / layout.triton_model)
        tracing = self._tracing()
        command = tritonserver.server_command(
            layout.model_repository,
            backends,
            layout.triton,
            load=[layout.triton_model] if published else [],
            extra=tritonserver.trace_options(tracing.http_endpoint) if tracing else (),
        )
        self._spawn(TRITON, command, tritonserver.server_environment(env))

    def _log(self, name: str) -> Path:
        return self.layout.log_dir / f"{name}.log"

    def _spawn(
        self, name: str, command: list[str], env: dict[str, str], cwd: Path | None = None
    ) -> None:
        with self._log(name).open("ab") as log:
            process = subprocess.Popen(
                command,
                env=env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children[name] = process
        (self.layout.run_dir / f"{name}.pid").write_text(str(process.pid))
        logger.info("started %s (pid %d)", name, process.pid)

    def _pid(self, name: str) -> int | None:
        path = self.layout.run_dir / f"{name}.pid"
        try:
            pid = int(path.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            path.unlink(missing_ok=True)
            return None
        child = self._children.get(name)
        if child is not None and child.pid == pid and child.poll() is not None:
            del self._children[name]
            path.unlink(missing_ok=True)
            return None
        return pid

    def running(self) -> dict[str, int]:
        names = [*self.layout.ports, CONSOLE, *WORKERS, TRITON, TRACES]
        return {n: pid for n in names if (pid := self._pid(n)) is not None}

    def stop(self, name: str, timeout: float = 15.0) -> None:
        """SIGTERMs one process (services drain), SIGKILLs it after `timeout`."""
        self._terminate({name: pid} if (pid := self._pid(name)) else {}, timeout)

    def down(self, timeout: float = 15.0) -> list[str]:
        """Stops the console and services first, then Triton and the trace receiver (last
        spans in)."""
        running = self.running()
        last = (TRITON, TRACES)
        self._terminate({n: p for n, p in running.items() if n not in last}, timeout)
        self._terminate({n: p for n, p in running.items() if n in last}, timeout)
        return list(running)

    def _terminate(self, processes: Mapping[str, int], timeout: float) -> None:
        for pid in processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        give_up = time.monotonic() + timeout
        for name, pid in processes.items():
            while self._pid(name) is not None and time.monotonic() < give_up:
                time.sleep(0.1)
            if self._pid(name) is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            (self.layout.run_dir / f"{name}.pid").unlink(missing_ok=True)
