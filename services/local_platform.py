"""`magpie up` / `magpie down`: the whole platform as local processes on loopback.

Uses the machine's PostgreSQL and Redis when they answer on their standard
ports; otherwise starts an embedded PostgreSQL (pgserver) in the state
directory and runs without a Redis cache. Each service runs as
`python -m services.<name>` with its pid and log in the state directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg2
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common import schema
from services.common.settings import ENV_PREFIX

__all__ = ["SERVICES", "LocalPlatform"]

logger = logging.getLogger(__name__)

SERVICES: dict[str, int] = {
    "profiles": 50051,
    "catalog": 50052,
    "retrieval": 50053,
    "ranking": 50054,
    "feedback": 50055,
}
"""Every Magpie service and its local port, in start order."""

MACHINE_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
MACHINE_REDIS = "redis://127.0.0.1:6379/0"
DATABASE_NAME = "magpie"


@dataclass(frozen=True)
class Dependencies:
    database_url: str
    redis_url: str


def available_services() -> list[str]:
    """Services whose package exists in this checkout (the platform grows issue by issue)."""
    root = Path(__file__).parent
    return [n for n in SERVICES if (root / n / "server.py").exists()]


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


class LocalPlatform:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.run_dir = state_dir / "run"
        self.log_dir = state_dir / "logs"

    def dependencies(self) -> Dependencies:
        if _postgres_reachable(MACHINE_POSTGRES):
            database_url = MACHINE_POSTGRES.rsplit("/", 1)[0] + f"/{DATABASE_NAME}"
        else:
            from pgserver.postgres_server import get_server  # only without a PostgreSQL

            logger.info("no PostgreSQL on 127.0.0.1:5432; starting an embedded one")
            server = get_server(self.state_dir / "pgdata", cleanup_mode=None)
            database_url = server.get_uri(DATABASE_NAME)
        redis_url = MACHINE_REDIS if _redis_reachable(MACHINE_REDIS) else ""
        if not redis_url:
            logger.warning("no Redis on 127.0.0.1:6379; services run without a cache")
        return Dependencies(database_url, redis_url)

    def environment(self, deps: Dependencies) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env.update(
            {
                "MAGPIE_DATABASE_URL": deps.database_url,
                "MAGPIE_REDIS_URL": deps.redis_url,
                **{f"MAGPIE_{n.upper()}_ADDR": f"127.0.0.1:{p}" for n, p in SERVICES.items()},
            }
        )
        return env

    def up(self, services: list[str], timeout: float = 60.0) -> dict[str, str]:
        """Starts dependencies, migrates, starts `services`; returns name -> address."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        deps = self.dependencies()
        schema.ensure_database(deps.database_url)
        schema.upgrade(deps.database_url)
        env = self.environment(deps)
        started = {}
        for name in services:
            if self._pid(name) is not None:
                logger.info("%s already running", name)
            else:
                self._spawn(name, {**env, "MAGPIE_PORT": str(SERVICES[name])})
            started[name] = f"127.0.0.1:{SERVICES[name]}"
        for name, address in started.items():
            if not wait_serving(address, timeout):
                raise RuntimeError(f"{name} did not become SERVING; see {self.log_dir / name}.log")
        return started

    def _spawn(self, name: str, env: dict[str, str]) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        (self.run_dir / f"{name}.pid").write_text(str(process.pid))
        logger.info("started %s (pid %d)", name, process.pid)

    def _pid(self, name: str) -> int | None:
        path = self.run_dir / f"{name}.pid"
        try:
            pid = int(path.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            path.unlink(missing_ok=True)
            return None
        return pid

    def running(self) -> dict[str, int]:
        return {n: pid for n in SERVICES if (pid := self._pid(n)) is not None}

    def down(self, timeout: float = 15.0) -> list[str]:
        """SIGTERMs every running service (they drain), SIGKILLs stragglers."""
        running = self.running()
        for pid in running.values():
            os.kill(pid, signal.SIGTERM)
        give_up = time.monotonic() + timeout
        for name, pid in running.items():
            while self._pid(name) is not None and time.monotonic() < give_up:
                time.sleep(0.1)
            if self._pid(name) is not None:
                os.kill(pid, signal.SIGKILL)
            (self.run_dir / f"{name}.pid").unlink(missing_ok=True)
        return list(running)
