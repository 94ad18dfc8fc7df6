"""The train stage as a Kubernetes Job: the real ``kubernetes`` client against the fake
API server of :mod:`.fake_kube`, whose controller runs each pod as a local subprocess
and applies the Job's own podFailurePolicy, backoffLimit and activeDeadlineSeconds.

``train_on_kubernetes`` runs end to end here with ``check_bundle`` standing in for
``validate_bundle`` on success (no training happens, so there is no bundle to validate);
with the real ``validate_bundle`` a succeeded Job without a bundle fails the stage."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from magpie.modelstore.validate import InvalidBundle
from magpie.retraining import stages
from magpie.retraining.jobs import (
    BUG_EXIT_CODE,
    POLL_SECONDS,
    JobClient,
    JobFailed,
    job_name,
    train_job,
    train_on_kubernetes,
)
from magpie.retraining.pipeline import TRANSIENT_ERRORS
from magpie.runtime.errors import AlreadyExists, Unavailable
from magpie.runtime.settings import Settings
from tests.integration.retraining.conftest import (
    NAMESPACE,
    WAITS,
    api_client,
    exits,
    job_settings,
    new_run,
    pods,
)
from tests.integration.retraining.fake_kube import FakeKube
from tests.support import free_port


def _context(settings: Settings, version: int | None = 7) -> stages.StageContext:
    return stages.StageContext(settings, new_run(version), lambda progress: None)


def test_train_waits_for_the_job_and_returns_once_it_succeeded(
    kube: FakeKube, jobs: JobClient, k8s_settings: Settings
) -> None:
    kube.pod_command = pods(WAITS)
    ctx = _context(k8s_settings)
    name = job_name(ctx.run.run_id)
    checked: list[Path] = []

    with pytest.raises(stages.Pending) as pending:
        train_on_kubernetes(ctx, jobs, check_bundle=checked.append, watch_seconds=0)
    assert pending.value.seconds == POLL_SECONDS
    assert str(pending.value).startswith(f"Job {name} running")
    kube.wait_for_pod(name, 0)
    running = jobs.status(name)
    assert (running.phase, running.active, running.run_id) == ("running", 1, ctx.run.run_id)
    assert checked == []

    kube.send(name, "0\n")
    fields = train_on_kubernetes(ctx, jobs, check_bundle=checked.append, watch_seconds=10)

    bundle = Path(k8s_settings.artifact_dir) / "7"
    assert fields == {"progress": {"job": name, "job_pods_failed": 0, "bundle": str(bundle)}}
    assert checked == [bundle]
    done = jobs.status(name)
    assert (done.phase, done.succeeded, done.active) == ("succeeded", 1, 0)
    assert done.reason == "CompletionsReached: Reached expected number of succeeded pods"
    assert kube.creates == [(name, 201), (name, 409)]  # the second look found the Job
    assert kube.received[0] == train_job(k8s_settings, ctx.run)  # the wire carried the manifest


def test_a_running_job_is_watched_briefly_then_the_stage_is_pending(
    kube: FakeKube, jobs: JobClient, k8s_settings: Settings
) -> None:
    kube.pod_command = pods(WAITS)
    ctx = _context(k8s_settings)
    name = job_name(ctx.run.run_id)

    with pytest.raises(stages.Pending, match=f"Job {name} running"):
        train_on_kubernetes(ctx, jobs, check_bundle=print, watch_seconds=1)

    watches = [q for method, path, q in kube.requests if q.get("watch") == ["true"]]
    assert watches == [
        {
            "fieldSelector": [f"metadata.name={name}"],
            "timeoutSeconds": ["1"],
            "watch": ["true"],
        }
    ]
    assert kube.running_pod(name) is not None  # the watch timed out, the Job runs on


def test_an_evicted_pod_is_replaced_without_counting_against_the_backoff_limit(
    kube: FakeKube, tmp_path: Path
) -> None:
    settings = job_settings(tmp_path, k8s_job_backoff_limit=0)  # one counted failure fails
    kube.pod_command = pods(WAITS)
    run = new_run()
    name = job_name(run.run_id)
    with JobClient(NAMESPACE, api_client(kube.url)) as jobs:
        jobs.ensure(train_job(settings, run))
        first = kube.wait_for_pod(name, 0)

        kube.evict(name)
        second = kube.wait_for_pod(name, 1)
        replaced = jobs.status(name)
        kube.send(name, "0\n")
        finished = jobs.watch(name, 10)

    assert first.disrupted and first.exit_code == 137 and first.action == "Ignore"
    assert second.exit_code == 0 and not second.disrupted
    assert (replaced.phase, replaced.failed) == ("running", 0)
    assert (finished.phase, finished.failed, finished.succeeded) == ("succeeded", 0, 1)
    assert len(kube.pods(name)) == 2


def test_a_bug_exit_code_fails_the_job_at_once_and_the_stage_says_why(
    kube: FakeKube, jobs: JobClient, k8s_settings: Settings
) -> None:
    assert k8s_settings.k8s_job_backoff_limit == 3
    kube.pod_command = pods(exits(BUG_EXIT_CODE))
    ctx = _context(k8s_settings)
    name = job_name(ctx.run.run_id)

    with pytest.raises(JobFailed) as failed:
        train_on_kubernetes(ctx, jobs, check_bundle=print, watch_seconds=10)

    [pod] = kube.pods(name)  # FailJob: no retry
    assert pod.action == "FailJob"
    state = jobs.status(name)
    assert (state.phase, state.failed) == ("failed", 1)
    assert state.reason == (
        f"PodFailurePolicy: Container trainer for pod {NAMESPACE}/{pod.name} failed with "
        f"exit code {BUG_EXIT_CODE} matching FailJob rule at index 1"
    )
    assert str(failed.value).startswith(f"Job {NAMESPACE}/{name} failed: {state.reason} ")
    assert f"kubectl -n {NAMESPACE} logs job/{name}" in str(failed.value)
    assert not isinstance(failed.value, TRANSIENT_ERRORS)  # the run fails with this error


def test_other_pod_failures_are_retried_up_to_the_backoff_limit(
    kube: FakeKube, tmp_path: Path
) -> None:
    settings = job_settings(tmp_path, k8s_job_backoff_limit=1)
    kube.pod_command = pods(exits(1), exits(137))  # a transient error, then the OOM killer
    run = new_run()
    name = job_name(run.run_id)
    with JobClient(NAMESPACE, api_client(kube.url)) as jobs:
        jobs.ensure(train_job(settings, run))
        state = jobs.watch(name, 10)

    assert [(p.exit_code, p.action) for p in kube.pods(name)] == [(1, "Count"), (137, "Count")]
    assert (state.phase, state.failed) == ("failed", 2)
    assert state.reason == "BackoffLimitExceeded: Job has reached the specified backoff limit"


def test_the_active_deadline_fails_a_job_that_runs_too_long(kube: FakeKube, tmp_path: Path) -> None:
    settings = job_settings(tmp_path, k8s_job_deadline_seconds=1)
    kube.pod_command = pods(WAITS)
    run = new_run()
    name = job_name(run.run_id)
    with JobClient(NAMESPACE, api_client(kube.url)) as jobs:
        jobs.ensure(train_job(settings, run))
        state = jobs.watch(name, 10)

    assert state.phase == "failed"
    assert state.reason == "DeadlineExceeded: Job was active longer than specified deadline"


def test_a_restarted_worker_resumes_the_job_instead_of_starting_a_second(
    kube: FakeKube, k8s_settings: Settings
) -> None:
    kube.pod_command = pods(WAITS)
    ctx = _context(k8s_settings)
    name = job_name(ctx.run.run_id)
    manifest = train_job(k8s_settings, ctx.run)

    with JobClient(NAMESPACE, api_client(kube.url)) as first_worker:
        started = first_worker.ensure(manifest)
    with JobClient(NAMESPACE, api_client(kube.url)) as restarted_worker:
        resumed = restarted_worker.ensure(manifest)
        kube.wait_for_pod(name, 0)
        kube.send(name, "0\n")
        fields = train_on_kubernetes(ctx, restarted_worker, check_bundle=print, watch_seconds=10)

    assert (started.name, started.phase) == (name, "running")
    assert (resumed.name, resumed.phase, resumed.run_id) == (name, "running", ctx.run.run_id)
    assert [status for _, status in kube.creates] == [201, 409, 409]
    assert [n for n, status in kube.creates if status == 201] == [name]  # one Job
    assert len(kube.pods(name)) == 1
    assert fields["progress"]["job"] == name


def test_a_job_of_the_same_name_for_another_run_is_not_taken_over(
    kube: FakeKube, jobs: JobClient, k8s_settings: Settings
) -> None:
    kube.pod_command = pods(WAITS)
    run = new_run()
    other = new_run(run_id=run.run_id[:8] + "-0000-4000-8000-000000000000")
    assert job_name(other.run_id) == job_name(run.run_id)
    jobs.ensure(train_job(k8s_settings, run))

    with pytest.raises(AlreadyExists, match=f"belongs to run {run.run_id}, not {other.run_id}"):
        jobs.ensure(train_job(k8s_settings, other))


def test_a_succeeded_job_without_a_valid_bundle_fails_the_stage(
    kube: FakeKube, jobs: JobClient, k8s_settings: Settings
) -> None:
    kube.pod_command = pods(exits(0))
    ctx = _context(k8s_settings)

    with pytest.raises(InvalidBundle, match="missing"):
        train_on_kubernetes(ctx, jobs, watch_seconds=10)  # the real validate_bundle


def test_delete_removes_the_job_in_the_background_and_a_watch_sees_it_go(
    kube: FakeKube, jobs: JobClient, k8s_settings: Settings
) -> None:
    kube.pod_command = pods(WAITS)
    run = new_run()
    name = job_name(run.run_id)
    jobs.ensure(train_job(k8s_settings, run))
    pod = kube.wait_for_pod(name, 0)
    outcome: list[BaseException] = []

    def watch() -> None:
        try:
            jobs.watch(name, 10)
        except JobFailed as error:
            outcome.append(error)

    watcher = threading.Thread(target=watch)
    watcher.start()
    kube.wait_until(lambda: kube.watches == 1, "the watch to start")
    with JobClient(NAMESPACE, api_client(kube.url)) as operator:
        assert operator.delete(name)
        assert not operator.delete(name)
    watcher.join(timeout=10)

    assert [str(e) for e in outcome] == [f"Job {NAMESPACE}/{name} was deleted while it ran"]
    assert kube.deletes == [(name, "Background")]
    kube.wait_until(lambda: pod.exit_code is not None, "the pod to be killed")
    with pytest.raises(ApiException) as missing:
        jobs.status(name)
    assert missing.value.status == 404


def test_an_unreachable_api_server_is_a_transient_error(k8s_settings: Settings) -> None:
    ctx = _context(k8s_settings)
    unreachable = api_client(f"http://127.0.0.1:{free_port()}")
    with (
        JobClient(NAMESPACE, unreachable) as jobs,
        pytest.raises(Unavailable, match="Kubernetes API unreachable: create Job") as error,
    ):
        train_on_kubernetes(ctx, jobs, check_bundle=print, watch_seconds=0)
    assert isinstance(error.value, TRANSIENT_ERRORS)  # the pipeline retries the stage
