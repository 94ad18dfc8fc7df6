"""Run the real ``tritonserver`` binary shipped in the ``nvidia-pytriton`` wheel.

No Docker: the wheel holds the server (2.51), the Python backend and one backend stub
per Python version. :func:`prepare_backends` copies the backend with the stub of the
running interpreter into a work directory; the stub then imports ``numpy`` and
``onnxruntime`` from the virtual environment found as ``python3`` on ``PATH``, so the
venv's ``bin`` goes first on ``PATH`` and the wheel's bundled libraries on
``LD_LIBRARY_PATH`` (:func:`server_environment`).

``magpie up``, tests and benchmarks start it the same way::

    with TritonServer.start(repository, work_dir, ports=TritonPorts(8000, 8001, 8002),
                            load=["magpie_ranker"]) as server:
        server.grpc_addr  # "127.0.0.1:8001"

or take :func:`server_command` and :func:`server_environment` to spawn it under another
supervisor. The server runs with explicit model control: it loads only the models named
in ``load`` (and later :func:`magpie.modelstore.publish.publish` calls).
"""

from __future__ import annotations

import http.client
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from magpie.runtime.errors import FailedPrecondition, Unavailable

__all__ = [
    "TritonPorts",
    "TritonServer",
    "prepare_backends",
    "server_command",
    "server_environment",
    "trace_options",
    "triton_root",
    "wait_ready",
]

logger = logging.getLogger(__name__)

_STOP_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class TritonPorts:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


def triton_root() -> Path:
    """``pytriton/tritonserver`` inside the installed (or unpacked) ``nvidia-pytriton`` wheel.

    Found without importing ``pytriton``, whose own dependencies need not be installed.
    """
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise FailedPrecondition("nvidia-pytriton is not installed (it ships tritonserver)")
    root = Path(next(iter(spec.submodule_search_locations))).resolve() / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise FailedPrecondition(f"no tritonserver binary under {root}")
    return root


def prepare_backends(work_dir: Path) -> Path:
    """``<work_dir>/backends`` with the Python backend and this interpreter's stub."""
    root = triton_root()
    stub = root / "python_backend_stubs" / f"{sys.version_info[0]}.{sys.version_info[1]}"
    backends = work_dir / "backends"
    python = backends / "python"
    python.mkdir(parents=True, exist_ok=True)
    for source in (root / "backends" / "python").iterdir():
        if source.is_file():
            shutil.copy2(source, python / source.name)
    shutil.copy2(stub / "triton_python_backend_stub", python / "triton_python_backend_stub")
    return backends


def server_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment tritonserver needs: venv first on PATH, the wheel's libraries."""
    env = dict(os.environ if base is None else base)
    libs = triton_root().parents[1] / "nvidia_pytriton.libs"
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        part for part in (str(libs), env.get("LD_LIBRARY_PATH", "")) if part
    )
    return env


def server_command(
    repository: Path,
    backends: Path,
    ports: TritonPorts,
    load: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> list[str]:
    """The tritonserver command line (explicit model control; loads only ``load``)."""
    return [
        str(triton_root() / "bin" / "tritonserver"),
        f"--model-repository={repository.resolve()}",
        f"--backend-directory={backends.resolve()}",
        "--model-control-mode=explicit",
        *(f"--load-model={name}" for name in load),
        f"--http-port={ports.http}",
        f"--grpc-port={ports.grpc}",
        f"--metrics-port={ports.metrics}",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--exit-on-error=true",
        "--log-verbose=0",
        *extra,
    ]


def trace_options(otlp_http_url: str, service_name: str = "triton") -> list[str]:
    """Flags that make tritonserver export OpenTelemetry spans (OTLP/HTTP JSON) of the
    requests that carry a W3C ``traceparent`` (rate 0: it starts no trace of its own)."""
    return [
        "--trace-config=mode=opentelemetry",
        f"--trace-config=opentelemetry,url={otlp_http_url}",
        f"--trace-config=opentelemetry,resource=service.name={service_name}",
        "--trace-config=rate=0",
        "--trace-config=level=TIMESTAMPS",
    ]


def _ready(http_addr: str, path: str) -> bool:
    host, port = http_addr.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=1.0)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def wait_ready(
    http_addr: str,
    models: Sequence[str] = (),
    timeout: float = 60.0,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until the server and ``models`` are ready; raises ``Unavailable`` on timeout.

    Asks Triton's HTTP health endpoints with the standard library only, so the launcher
    also works where tritonclient is not installed (the GPU benchmark machine).
    """
    paths = ["/v2/health/ready", *(f"/v2/models/{m}/ready" for m in models)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise Unavailable(f"tritonserver exited with status {process.returncode}")
        if all(_ready(http_addr, path) for path in paths):
            return
        time.sleep(0.1)
    raise Unavailable(f"tritonserver at {http_addr} not ready after {timeout:.0f}s")


class TritonServer:
    """A running tritonserver process; a context manager that stops it on exit."""

    def __init__(self, process: subprocess.Popen[bytes], ports: TritonPorts, log: Path) -> None:
        self.process = process
        self.ports = ports
        self.log = log

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def http_addr(self) -> str:
        return f"127.0.0.1:{self.ports.http}"

    @classmethod
    def start(
        cls,
        repository: Path,
        work_dir: Path,
        ports: TritonPorts,
        load: Sequence[str] = (),
        timeout: float = 60.0,
        extra: Sequence[str] = (),
    ) -> TritonServer:
        """Start tritonserver on ``ports`` and wait until it and ``load`` are ready.

        Logs go to ``<work_dir>/tritonserver.log``. Raises ``Unavailable`` (and stops the
        process) if it exits or is not ready within ``timeout`` seconds.
        """
        backends = prepare_backends(work_dir)
        log = work_dir / "tritonserver.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                server_command(repository, backends, ports, load, extra),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=server_environment(),
                start_new_session=True,
            )
        server = cls(process, ports, log)
        try:
            wait_ready(server.http_addr, load, timeout, process)
        except BaseException:
            server.stop()
            raise
        logger.info("tritonserver ready on %s (pid %s)", server.grpc_addr, process.pid)
        return server

    def stop(self, timeout: float = _STOP_SECONDS) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("tritonserver pid %s ignored SIGTERM; killing", self.process.pid)
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
