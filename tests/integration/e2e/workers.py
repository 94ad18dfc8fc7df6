"""The retraining worker and beat as real processes beside the e2e platform."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from magpie.retraining import runs
from magpie.retraining.runs import Run
from tests.integration.e2e.conftest import Platform
from tests.support import REPO

RETRAIN_PIPELINE = {
    "retrieval": {"epochs": 12, "max_seconds": 1e9},
    "ranker": {"epochs": 2, "max_seconds": 1e9},
}
"""What the e2e platform's first model was trained with (E2E_PIPELINE), as JSON."""


@dataclass
class Process:
    role: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL to the whole process group: the worker and its pool children."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def worker_env(platform: Platform, tmp: Path, **settings: str) -> dict[str, str]:
    """The platform's MAGPIE_* settings plus the worker's own (``settings`` as name=value)."""
    pipeline = tmp / "retrain-pipeline.json"
    pipeline.write_text(json.dumps(RETRAIN_PIPELINE))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGPIE_")}
    env.update(platform.local.service_settings())
    env.update(platform.traces.targets.environment())
    env.update(
        {
            "MAGPIE_RETRAIN_PIPELINE": str(pipeline),
            "MAGPIE_RETRAIN_LEASE_SECONDS": "6",
            "MAGPIE_RETRAIN_SCHEDULE_SECONDS": "0",
            "MAGPIE_LOG_JSON": "false",
            "MAGPIE_METRICS_PORT": "0",  # the default (a fixed port) may be held elsewhere
        }
    )
    env.update({f"MAGPIE_{name.upper()}": value for name, value in settings.items()})
    return env


@contextlib.contextmanager
def started(role: str, env: Mapping[str, str], log_dir: Path) -> Iterator[Process]:
    """``python -m services.worker ROLE`` in its own process group until the block ends."""
    log = log_dir / f"{role}-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.worker", role],
            env=dict(env),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Process(role, process, log)
    try:
        yield running
    finally:
        running.stop()


def latest_run(database_url: str, model_name: str = "magpie") -> Run | None:
    with psycopg2.connect(database_url) as conn:
        found = runs.latest_runs(conn, model_name, 1)
    conn.close()
    return found[0] if found else None


def all_runs(database_url: str, model_name: str = "magpie") -> list[Run]:
    with psycopg2.connect(database_url) as conn:
        found = runs.latest_runs(conn, model_name, 100)
    conn.close()
    return found


def wait_for(
    database_url: str,
    done: object,
    timeout: float,
    what: str,
    log: Process | None = None,
) -> Run:
    """Polls the newest run until ``done(run)`` is true."""
    give_up = time.monotonic() + timeout
    run = None
    while time.monotonic() < give_up:
        run = latest_run(database_url)
        if run is not None and done(run):  # type: ignore[operator]
            return run
        time.sleep(0.5)
    detail = log.output()[-4000:] if log is not None else ""
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s: {run}\n{detail}")
