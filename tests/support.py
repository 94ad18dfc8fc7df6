"""Helpers for tests that run real Magpie services."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.rpc import error_details_pb2, status_pb2

from magpie.platform.local import free_port, wait_serving
from magpie.runtime.settings import ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
"""A PostgreSQL database through which integration tests create their own databases."""
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def field_violations(error: grpc.RpcError) -> list[str]:
    """The fields named by the google.rpc.BadRequest detail of an INVALID_ARGUMENT error."""
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    return [v.field for v in bad_request.field_violations]


def settings_env(settings: Settings) -> dict[str, str]:
    """The MAGPIE_* environment that reproduces `settings` in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[ENV_PREFIX + name.upper()] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
    return env


@dataclass
class ServiceProcess:
    name: str
    address: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def service_process(
    name: str,
    settings: Settings,
    log_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    python_options: Sequence[str] = (),
) -> Iterator[ServiceProcess]:
    """Runs `python [python_options] -m services.<name>` on a free port (its /metrics on
    another) until the block ends."""
    port = free_port()
    env = {
        **settings_env(settings),
        "MAGPIE_PORT": str(port),
        "MAGPIE_METRICS_PORT": "0",  # the default (a fixed port) may be held by another test
        **(extra_env or {}),
    }
    log = log_dir / f"{name}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, *python_options, "-m", f"services.{name}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    running = ServiceProcess(name, f"127.0.0.1:{port}", process, log)
    try:
        if not wait_serving(running.address, timeout=30):
            raise AssertionError(f"{name} never became SERVING:\n{running.output()}")
        yield running
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; returns once the process is gone."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_magpie(env: Mapping[str, str], *argv: str, timeout: float = 300) -> str:
    """``python -m magpie.platform.cli ARGV`` as a user runs it; its stdout, or fails the
    test with its output."""
    done = subprocess.run(
        [sys.executable, "-m", "magpie.platform.cli", *argv],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def write_tokens(path: Path, roles: Mapping[str, str]) -> dict[str, str]:
    """Writes a tokens file accepting a caller per `roles` entry (name -> role); returns
    each caller's token."""
    from magpie.runtime.auth import new_token

    tokens, entries = {}, {}
    for name, role in roles.items():
        tokens[name], entry = new_token(name, role)
        entries.update(entry)
    staged = path.with_suffix(".new")
    staged.write_text(json.dumps(entries))
    staged.replace(path)  # at once, as a Secret update
    return tokens


def redis_server_command(port: int, directory: Path | None = None) -> list[str]:
    """A private ``redis-server`` on loopback, without persistence (its files, if any, in
    `directory`)."""
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no"]
    return command + (["--dir", str(directory)] if directory is not None else [])


async def code_of(call: object) -> grpc.StatusCode:
    """The status code a gRPC call (an awaitable) ends with."""
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK
