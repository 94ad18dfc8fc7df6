"""``magpie retrain ...``: start a run, see where runs are, run one stage in the foreground.

magpie retrain start [--wait] [--shuffle-events] [--config F]   ask the worker for a run
magpie retrain status [RUN_ID]                                  runs: stage, epoch, metrics
magpie retrain run-stage RUN_ID                                 one stage here (a Job's command)
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path
from typing import Any

from magpie.modelstore.lifecycle import connection
from magpie.retraining import runs
from magpie.retraining.runs import Run
from magpie.runtime.settings import Settings, load_settings

__all__ = ["add_commands", "describe"]


def _elapsed(run: Run) -> str:
    end = run.finished_at or datetime.datetime.now(datetime.UTC)
    seconds = int((end - run.created_at).total_seconds())
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s"


def describe(run: Run, task_state: str | None = None) -> list[str]:
    """A run as lines a person reads: what, where, how far, why it ended."""
    progress = run.progress
    lines = [
        f"run {run.run_id}  {run.status}  stage {run.stage}  version {run.version or '-'}  "
        f"trigger {run.trigger}  elapsed {_elapsed(run)}"
    ]
    if "epoch" in progress:
        lines.append(
            f"  training {progress.get('model')}: epoch {progress['epoch']}/{progress['epochs']}, "
            f"valid NDCG@10 {progress.get('valid_ndcg10', 0.0):.4f}"
        )
    if task_state:
        lines.append(f"  celery task {progress.get('task_id')}: {task_state}")
    if run.verdict:
        lines.append(f"  gate: {run.verdict.get('reason', '')}")
    if run.error:
        lines.append(f"  error: {run.error}")
    return lines


def _task_state(settings: Settings, run: Run) -> str | None:
    task_id = run.progress.get("task_id")
    if not task_id or run.status != "running":
        return None
    from celery import Celery

    app = Celery("magpie-status", broker=settings.broker_url, backend=settings.result_backend)
    try:
        return str(app.AsyncResult(task_id).state)
    except Exception as error:  # noqa: BLE001 - status must print even with the backend down
        return f"unknown ({type(error).__name__})"


def _status(args: argparse.Namespace) -> int:
    settings = load_settings()
    with connection(settings) as conn:
        found = (
            [runs.get_run(conn, args.run_id)]
            if args.run_id
            else runs.latest_runs(conn, settings.model_name, args.limit)
        )
    if not found:
        print("no retraining runs yet")
    for run in found:
        print("\n".join(describe(run, _task_state(settings, run))))
    return 0


def _start(args: argparse.Namespace) -> int:
    from magpie.retraining.triggers import producer, send_trigger

    settings = load_settings()
    params: dict[str, Any] = {}
    if args.shuffle_events:
        params["shuffle_events"] = True
    if args.config is not None:
        params["pipeline"] = json.loads(Path(args.config).read_text())
    send_trigger(producer(settings), "manual", {"actor": "cli"}, params)
    print("asked the worker for a run")
    if not args.wait:
        return 0
    give_up = time.monotonic() + args.timeout
    run: Run | None = None
    while time.monotonic() < give_up:
        with connection(settings) as conn:
            latest = runs.latest_runs(conn, settings.model_name, 1)
        run = latest[0] if latest else None
        if run is not None and run.status != "running":
            break
        time.sleep(2.0)
    if run is None:
        print("no run started within the timeout (is the worker running?)")
        return 1
    print("\n".join(describe(run)))
    return 0 if run.status == "succeeded" else 1


def _run_stage(args: argparse.Namespace) -> int:
    from magpie.retraining.pipeline import execute, new_holder

    settings = load_settings()
    outcome = execute(settings, args.run_id, new_holder())
    print(f"{outcome.action}: " + "; ".join(describe(outcome.run) if outcome.run else []))
    return 0 if outcome.action in ("next", "done", "later") else 1


def _train_job(args: argparse.Namespace) -> int:
    from magpie.retraining.jobs import run_train_job

    return run_train_job(load_settings(), args.run_id)


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers ``magpie retrain start|status|run-stage``."""
    retrain = subparsers.add_parser("retrain", help="retraining runs")
    commands = retrain.add_subparsers(dest="retrain_command", required=True)

    start = commands.add_parser("start", help="ask the retraining worker for a run now")
    start.add_argument("--wait", action="store_true", help="until the run ends; exit 0 if served")
    start.add_argument("--timeout", type=float, default=3600.0)
    start.add_argument(
        "--shuffle-events",
        action="store_true",
        help="negative control: train on shuffled events (the gate must reject it)",
    )
    start.add_argument("--config", default=None, help="JSON file of pipeline settings")
    start.set_defaults(handler=_start)

    status = commands.add_parser("status", help="the newest runs, or one run")
    status.add_argument("run_id", nargs="?", default=None)
    status.add_argument("--limit", type=int, default=5)
    status.set_defaults(handler=_status)

    stage = commands.add_parser(
        "run-stage", help="run a run's current stage here, with a progress bar (a Job's command)"
    )
    stage.add_argument("run_id")
    stage.set_defaults(handler=_run_stage)

    job = commands.add_parser(
        "train-job", help="a run's train stage here, without the lease (a training Job's command)"
    )
    job.add_argument("run_id")
    job.set_defaults(handler=_train_job)
