"""``magpie retrain train-job RUN_ID`` (:func:`run_train_job`), the training Job's
command: its exit codes against a real database, in this process and as the pod of a Job
on the fake API server (whose podFailurePolicy then decides what the exit code means).

A successful training is not run here (that is the trainer's own tests' business): the
paths are the ones that end before or at the start of ``stages.train``."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from magpie.retraining import runs, stages
from magpie.retraining.jobs import (
    BUG_EXIT_CODE,
    TRANSIENT_EXIT_CODE,
    JobClient,
    JobFailed,
    job_name,
    run_train_job,
    train_on_kubernetes,
)
from magpie.retraining.runs import Run, Stage
from magpie.runtime.settings import Settings
from tests.integration.retraining.conftest import job_settings
from tests.integration.retraining.fake_kube import FakeKube
from tests.support import free_port

TRAIN_JOB = (
    "import sys\n"
    "from magpie.retraining.jobs import run_train_job\n"
    "from magpie.runtime.settings import load_settings\n"
    "sys.exit(run_train_job(load_settings(), sys.argv[1]))\n"
)
"""What the CLI's ``magpie retrain train-job RUN_ID`` does."""


def _train_job_command(job: Mapping[str, Any], index: int) -> list[str]:
    """The Job's own command, with ``magpie retrain train-job`` run by this Python."""
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["magpie", "retrain", "train-job"]
    return [sys.executable, "-c", TRAIN_JOB, *command[3:]]


@pytest.fixture
def db_settings(clean_db: str, tmp_path: Path) -> Settings:
    return job_settings(tmp_path, database_url=clean_db, k8s_job_backoff_limit=1)


def _run_at(settings: Settings, stage: Stage, version: int | None = 7) -> Run:
    """A running run advanced to ``stage`` the way the worker advances it."""
    with psycopg2.connect(settings.database_url) as conn:
        run, _ = runs.start_run(conn, settings.model_name, "manual")
        for done in runs.STAGES[: runs.STAGES.index(stage)]:
            assert runs.claim(conn, run.run_id, "test", 60.0) is not None
            fields = {"version": version} if done == "snapshot" and version is not None else {}
            moved = runs.complete_stage(conn, run.run_id, "test", done, fields)
            assert moved is not None
            run = moved
    conn.close()
    assert run.stage == stage
    return run


def _cancelled(settings: Settings, run: Run) -> Run:
    with psycopg2.connect(settings.database_url) as conn:
        ended = runs.finish(conn, run.run_id, "failed", {"error": "cancelled by a person"})
    conn.close()
    assert ended is not None
    return ended


def test_a_run_at_train_whose_training_raises_exits_with_the_bug_code(
    db_settings: Settings,
) -> None:
    run = _run_at(db_settings, "train", version=None)  # stages.train refuses it

    assert run_train_job(db_settings, run.run_id) == BUG_EXIT_CODE


def test_a_run_that_ended_is_not_trained_for(db_settings: Settings) -> None:
    run = _cancelled(db_settings, _run_at(db_settings, "train"))

    assert run_train_job(db_settings, run.run_id) == BUG_EXIT_CODE


def test_an_unknown_run_exits_with_the_bug_code(db_settings: Settings) -> None:
    assert run_train_job(db_settings, "00000000-0000-4000-8000-000000000000") == BUG_EXIT_CODE


def test_a_run_already_past_training_is_done(db_settings: Settings) -> None:
    run = _run_at(db_settings, "evaluate")

    assert run_train_job(db_settings, run.run_id) == 0


def test_an_unreachable_database_exits_with_the_transient_code(tmp_path: Path) -> None:
    settings = job_settings(
        tmp_path, database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    )

    assert run_train_job(settings, "00000000-0000-4000-8000-000000000000") == TRANSIENT_EXIT_CODE


def test_the_job_fails_at_once_when_its_command_exits_with_the_bug_code(
    kube: FakeKube, jobs: JobClient, db_settings: Settings
) -> None:
    kube.pod_command = _train_job_command
    kube.secrets["magpie-env"] = {"MAGPIE_DATABASE_URL": db_settings.database_url}
    run = _run_at(db_settings, "train")
    _cancelled(db_settings, run)  # a person ended the run before its Job started
    ctx = stages.StageContext(db_settings, run, lambda progress: None)

    with pytest.raises(JobFailed, match=f"exit code {BUG_EXIT_CODE} matching FailJob"):
        train_on_kubernetes(ctx, jobs, check_bundle=print, watch_seconds=20)

    [pod] = kube.pods(job_name(run.run_id))
    assert pod.exit_code == BUG_EXIT_CODE
    assert pod.log is not None and "not training for it" in pod.log.read_text()


def test_the_job_retries_its_command_on_transient_errors_up_to_the_backoff_limit(
    kube: FakeKube, jobs: JobClient, db_settings: Settings
) -> None:
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    kube.pod_command = _train_job_command
    kube.secrets["magpie-env"] = {"MAGPIE_DATABASE_URL": unreachable}
    run = _run_at(db_settings, "train")
    ctx = stages.StageContext(db_settings, run, lambda progress: None)

    with pytest.raises(JobFailed, match="BackoffLimitExceeded"):
        train_on_kubernetes(ctx, jobs, check_bundle=print, watch_seconds=20)

    pods = kube.pods(job_name(run.run_id))
    assert [(p.exit_code, p.action) for p in pods] == [(TRANSIENT_EXIT_CODE, "Count")] * 2
    assert jobs.status(job_name(run.run_id)).failed == 2
