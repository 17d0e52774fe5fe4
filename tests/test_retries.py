"""Retries without harm: reuse after a crash, timeouts from history, `debflow retry`, cancellation."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.testing import ActivityEnvironment

from activities.faults import FaultInjector, InjectedFault
from activities.storage.history import TaskHistoryWriter
from activities.storage.store import ArtifactStore
from activities.tools.environments import record_environment
from activities.tools.executors import BuildOutput, EnvironmentUse, HostExecutor
from activities.tools.runs import ToolRuns
from activities.uploads.debian_tasks import DebianTasks
from activities.uploads.timeouts import TimeoutEstimator, bound
from client.api import (
    RetryRefused,
    close_run,
    get_report,
    retry_failed,
    store_source_package,
    submit_upload,
)
from models.payloads import (
    BuildInput,
    Check,
    EstimateTimeoutsInput,
    TaskResult,
    TaskStatus,
    TaskTimeouts,
    TimeoutEstimates,
    UploadPipelineInput,
    UploadReport,
)
from models.tables import Artifact, TaskHistory
from tests.test_pipeline import replay, worker_with
from worker.settings import Settings
from workflows.upload_pipeline import UploadPipelineWorkflow


class CountingExecutor(HostExecutor):
    """The host executor, counting the builds it really runs."""

    builds = 0

    def build(self, dsc: Path, workdir: Path, **kwargs: object) -> BuildOutput:
        self.builds += 1
        return super().build(dsc, workdir, **kwargs)  # type: ignore[arg-type]


def test_a_retry_after_a_crash_after_store_reuses_the_build(
    settings: Settings,
    store: ArtifactStore,
    sessions: sessionmaker[Session],
    example_sources: dict[str, Path],
    tmp_path: Path,
) -> None:
    artifact_id, source, version = store_source_package(
        settings, settings.database_url or "", example_sources["hello-debflow"]
    )
    executor = CountingExecutor()
    tasks = DebianTasks(
        ToolRuns(
            sessions=sessions,
            store=store,
            executor=executor,
            scratch_dir=tmp_path,
            heartbeat_interval=1,
            expiration_days=1,
            faults=FaultInjector(rate=1.0, activities="build_package"),
        )
    )
    params = BuildInput(
        upload_artifact_id=artifact_id,
        source=source,
        version=version,
        suite="bookworm",
        architecture="amd64",
        build_arch_all=True,
    )
    workflow_id = f"crash-after-store-{uuid.uuid4().hex[:8]}"
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=workflow_id, activity_id="7", attempt=1)
    heartbeats: list[object] = []
    env.on_heartbeat = lambda *details: heartbeats.append(details[0] if details else None)

    with pytest.raises(InjectedFault, match="fault injection: build_package"):
        env.run(tasks.build_package, params)
    stored = heartbeats[-1]
    assert isinstance(stored, dict) and stored["stage"] == "stored"

    # The retry: Temporal runs the same activity id again, with the last heartbeat's details.
    env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=[stored])
    result = env.run(tasks.build_package, params)

    assert executor.builds == 1  # not rebuilt
    assert result.reused and result.tries == 2 and result.result == TaskResult.SUCCESS
    assert result.changes_artifact_id is not None
    assert sorted(
        [result.log_artifact_id, *result.binary_artifact_ids, result.changes_artifact_id]
    ) == sorted(stored["artifact_ids"])
    assert {"hello-debflow", "hello-debflow-doc"} <= set(result.packages)
    assert result.duration_s > 0
    with sessions() as session:
        history = session.scalar(
            select(func.count()).select_from(TaskHistory).where(TaskHistory.workflow_id == workflow_id)
        )
        artifacts = session.scalar(
            select(func.count()).select_from(Artifact).where(Artifact.workflow_id == workflow_id)
        )
    assert history == 1  # recorded with the artifacts, once
    assert artifacts == len(stored["artifact_ids"])


def test_timeouts_come_from_the_p95_of_task_history(sessions: sessionmaker[Session]) -> None:
    source = f"timed-{uuid.uuid4().hex[:8]}"
    suite = source  # environment rows are per suite/architecture: none of other tests' here
    now = dt.datetime.now(dt.UTC)
    runs = [("build", 300.0, "success"), ("build", 400.0, "failure"), ("build", 350.0, "success")]
    runs += [("build", 9000.0, "error")]  # an error may be a timeout: it does not count
    runs += [("lintian", 20.0, "success"), ("lintian", 25.0, "success")]  # too few samples
    runs += [("autopkgtest", 10.0, "success")] * 3  # far below the floor
    with sessions.begin() as session:
        for task, seconds, result in runs:
            TaskHistoryWriter().add(
                session,
                task_name=task,
                subject=source,
                context=f"{suite}/amd64",
                workflow_id=None,
                started_at=now,
                duration_s=seconds,
                result=result,
                usage=[],
            )
    estimator = TimeoutEstimator(sessions=sessions, floor_s=600, factor=4, min_samples=3)
    defaults = TaskTimeouts(build_s=3600, lintian_s=1800, autopkgtest_s=7200)

    def estimate() -> TimeoutEstimates:
        return ActivityEnvironment().run(
            estimator.estimate_timeouts,
            EstimateTimeoutsInput(
                source=source, suite=suite, architectures=["amd64", "arm64"], defaults=defaults
            ),
        )

    found = estimate()
    # p95 of 300, 350, 400 (linear interpolation) is 395; 4 x 395 = 1580 within [600, 3600].
    assert found.timeouts["build/amd64"] == pytest.approx(1580)
    assert found.timeouts["lintian/amd64"] == 1800  # 2 of 3 samples: the configured timeout
    assert found.timeouts["autopkgtest/amd64"] == 600  # the floor
    assert found.timeouts["build/arm64"] == 3600  # no history on arm64
    assert "p95 395 s of 3 runs" in found.basis["build/amd64"]
    assert bound(5000, 10, 3600, floor_s=600, factor=4, min_samples=3)[0] == 3600  # the ceiling

    # Making the environment is recorded apart: added once to builds and tests, never multiplied.
    history = TaskHistoryWriter()
    with sessions.begin() as session:
        for seconds in (30.0, 40.0, 50.0):
            use = EnvironmentUse(artifact_id=0, seconds=seconds, ready=False, made=True)
            record_environment(
                session, use, history=history, context=f"{suite}/amd64", workflow_id=None, wanted_by="test"
            )
        found_at_once = EnvironmentUse(artifact_id=0, seconds=2.0, ready=True, made=False)
        record_environment(
            session,
            found_at_once,
            history=history,
            context=f"{suite}/amd64",
            workflow_id=None,
            wanted_by="test",
        )
    found = estimate()
    # p95 of 30, 40, 50 is 49 (the environment found at once has no row).
    assert found.timeouts["build/amd64"] == pytest.approx(1580 + 49)
    assert found.timeouts["autopkgtest/amd64"] == pytest.approx(600 + 49)
    assert found.timeouts["lintian/amd64"] == 1800  # lintian runs on the host, in no environment
    assert found.timeouts["build/arm64"] == 3600
    assert "49 s of 3 environment makings" in found.basis["build/amd64"]
    assert found.policy is None  # the run sent its own ceilings (runs recorded before workers had theirs)

    # Runs now send none: the worker's own policy is the ceiling, and the run is told it.
    policy = TaskTimeouts(build_s=1200, heartbeat_s=30, queue_wait_s=90)
    worker_side = TimeoutEstimator(sessions=sessions, floor_s=600, factor=4, min_samples=3, policy=policy)
    found = ActivityEnvironment().run(
        worker_side.estimate_timeouts,
        EstimateTimeoutsInput(source=source, suite=suite, architectures=["amd64", "arm64"]),
    )
    assert found.policy == policy
    assert found.timeouts["build/arm64"] == 1200 and found.timeouts["build/amd64"] == 1200  # capped


def test_retry_is_accepted_only_for_a_finished_run_with_failures() -> None:
    """The update's validator, on the workflow object's own state (no Temporal needed)."""
    pipeline = UploadPipelineWorkflow()
    with pytest.raises(ValueError, match="still running"):
        pipeline._validate_retry()
    pipeline._params = UploadPipelineInput(upload_artifact_id=1)
    pipeline._finished = True
    with pytest.raises(ValueError, match="nothing to retry"):
        pipeline._validate_retry()
    from models.payloads import TaskReport

    pipeline._tasks.reports["build/amd64"] = TaskReport(
        name="build", architecture="amd64", status=TaskStatus.ERROR, result=TaskResult.ERROR
    )
    pipeline._validate_retry()
    pipeline._closing = True
    with pytest.raises(ValueError, match="no longer accepts retries"):
        pipeline._validate_retry()


@pytest.mark.slow
async def test_a_finished_run_ends_and_retry_reruns_its_failed_test_in_a_new_run(
    client: Client, settings: Settings, worker: None, example_sources: dict[str, Path]
) -> None:
    # Runs used to stay open (Running in the Web UI) for this window after their tasks had finished.
    settings.retry_window_s = 600
    handle = await submit_upload(
        client, settings, settings.database_url or "", example_sources["broken-debflow"], again=True
    )
    first = await get_report(client, handle.id, poll_s=0.3)
    ended = await handle.describe()
    assert ended.status == WorkflowExecutionStatus.COMPLETED  # as soon as its tasks are done
    assert first.result == TaskResult.FAILURE and first.accepting_retries_until is None

    retried = await retry_failed(client, settings, handle.id)
    second = await retried.result()

    again = await client.get_workflow_handle(handle.id).describe()
    assert again.run_id != ended.run_id and again.status == WorkflowExecutionStatus.COMPLETED
    assert second.retry_of == ended.run_id and await again.memo_value("retry_of") == ended.run_id
    tasks = {t.name: t for t in second.tasks}
    before = {t.name: t for t in first.tasks}
    assert second.retry_rounds == 1
    assert [a.result for a in tasks["autopkgtest"].attempts] == [TaskResult.FAILURE, TaskResult.FAILURE]
    assert tasks["autopkgtest"].artifact_ids != before["autopkgtest"].artifact_ids  # a new run
    # The build and lintian succeeded: reused from the first run, not run again.
    assert tasks["build"].attempts == before["build"].attempts and second.builds == first.builds
    assert tasks["lintian"].attempts == before["lintian"].attempts
    await replay(client, handle.id, "upload-pipeline-v4-retry-in-a-new-run")

    with pytest.raises(RetryRefused, match="nothing to retry"):
        await retry_failed(client, settings, (await _passing_run(client, settings, example_sources)).id)
    assert not await close_run(client, handle.id)  # nothing stays open to close


async def _passing_run(
    client: Client, settings: Settings, example_sources: dict[str, Path]
) -> WorkflowHandle[UploadPipelineWorkflow, UploadReport]:
    handle = await submit_upload(
        client,
        settings,
        settings.database_url or "",
        example_sources["hello-debflow"],
        checks=[Check.BUILD],
        again=True,
    )
    assert (await handle.result()).result == TaskResult.SUCCESS
    return handle


async def test_retry_reruns_an_errored_build_and_what_depends_on_it(
    client: Client, settings: Settings, sessions: sessionmaker[Session], example_sources: dict[str, Path]
) -> None:
    settings.queue_wait_s = 3  # no worker here polls the arm64 build queue
    async with worker_with(client, settings):
        handle = await submit_upload(
            client,
            settings,
            settings.database_url or "",
            example_sources["hello-debflow"],
            architectures=["amd64", "arm64"],
            checks=[Check.BUILD, Check.LINTIAN],
            again=True,
        )
        first = await handle.result()
        arm64 = {t.name: t for t in first.tasks if t.architecture == "arm64"}
        assert arm64["build"].status == TaskStatus.ERROR and arm64["lintian"].summary == "build errored"

        second = await (await retry_failed(client, settings, handle.id)).result()
    again = {(t.name, t.architecture): t for t in second.tasks}
    assert len(again["build", "arm64"].attempts) == 2  # re-run, and errored again (no arm64 worker)
    assert len(again["build", "amd64"].attempts) == 1  # succeeded: left alone
    assert len(again["lintian", "amd64"].attempts) == 1
    assert again["lintian", "arm64"].summary == "build errored"
    assert second.retry_rounds == 1 and second.result == TaskResult.ERROR
    # Both errors of the arm64 build have their task-history row (record_task_error).
    with sessions() as session:
        errors = session.scalars(
            select(TaskHistory.context).where(
                TaskHistory.workflow_id == handle.id, TaskHistory.result == "error"
            )
        ).all()
    assert errors == ["bookworm/arm64", "bookworm/arm64"]
    await replay(client, handle.id, "upload-pipeline-v4-retry-errored-build")


def _slow_source(root: Path, pid_file: Path) -> Path:
    """A package whose build writes its pid and then sleeps for five minutes."""
    tree = root / "slow-debflow-1.0"
    (tree / "debian" / "source").mkdir(parents=True)
    (tree / "debian" / "source" / "format").write_text("3.0 (native)\n")
    (tree / "debian" / "control").write_text(
        "Source: slow-debflow\nSection: misc\nPriority: optional\nMaintainer: debflow <debflow@example.org>\n"
        "Build-Depends: debhelper-compat (= 13)\nStandards-Version: 4.6.2\n\n"
        "Package: slow-debflow\nArchitecture: all\nDescription: sleeps while it builds\n a test package\n"
    )
    (tree / "debian" / "changelog").write_text(
        "slow-debflow (1.0) unstable; urgency=medium\n\n  * Sleeps.\n\n"
        " -- debflow <debflow@example.org>  Mon, 01 Dec 2026 10:00:00 +0000\n"
    )
    (tree / "debian" / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
    )
    rules = tree / "debian" / "rules"
    build = f"sh -c 'echo $$$$ > {pid_file}; exec sleep 300'"
    rules.write_text(f"#!/usr/bin/make -f\n%:\n\tdh $@\noverride_dh_auto_build:\n\t{build}\n")
    rules.chmod(0o755)
    subprocess.run(["dpkg-source", "-b", tree.name], cwd=root, check=True, capture_output=True)
    return root / "slow-debflow_1.0.dsc"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or between open and read
        return False


async def test_cancelling_a_run_kills_its_build_within_a_heartbeat_interval(
    client: Client, settings: Settings, worker: None, tmp_path: Path
) -> None:
    pid_file = tmp_path / "build.pid"
    dsc = _slow_source(tmp_path, pid_file)
    handle = await submit_upload(
        client, settings, settings.database_url or "", dsc, checks=[Check.BUILD], again=True
    )
    deadline = time.monotonic() + 120
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the slow build did not start"
        await asyncio.sleep(0.2)
    pid = int(pid_file.read_text())
    assert _alive(pid)

    cancelled_at = time.monotonic()
    await handle.cancel()
    while _alive(pid) and time.monotonic() - cancelled_at < 30:
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - cancelled_at

    print(f"build process group killed {elapsed:.2f} s after the cancellation request")
    assert not _alive(pid)
    # One heartbeat interval for the cancellation to reach the activity, plus scheduling slack.
    assert elapsed < settings.heartbeat_interval_s + 1.5, (
        f"the build outlived its cancellation by {elapsed:.1f} s"
    )
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
