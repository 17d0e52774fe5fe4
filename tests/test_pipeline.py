"""Both example uploads end to end: real dpkg-buildpackage, lintian and autopkgtest through Temporal."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from client.api import submit_upload
from models.payloads import Check, TaskReport, TaskResult, TaskStatus, UploadReport
from models.tables import Artifact, ArtifactRelation, TaskHistory
from worker.main import WORKFLOWS, build_worker
from worker.settings import Settings

HISTORIES = Path(__file__).parent / "histories"


def tasks_by_name(report: UploadReport) -> dict[str, TaskReport]:
    return {t.name: t for t in report.tasks}


def without_stack_traces(history_json: str) -> str:
    """A recorded history without the failures' stack traces: they name this machine's paths, and replay
    does not read them."""

    def scrub(node: object) -> object:
        if isinstance(node, dict):
            return {k: "" if k == "stackTrace" else scrub(v) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return node

    return json.dumps(scrub(json.loads(history_json)), indent=2) + "\n"


async def replay(client: Client, workflow_id: str, record_as: str) -> None:
    """Replay a fresh history; with DEBFLOW_RECORD_HISTORIES=1 also keep it for future replays."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    if os.environ.get("DEBFLOW_RECORD_HISTORIES") == "1":
        # The workflow id is part of the file name: workflows derive child ids from their own.
        for old in HISTORIES.glob(f"{record_as}--*.json"):
            old.unlink()
        (HISTORIES / f"{record_as}--{workflow_id}.json").write_text(without_stack_traces(history.to_json()))
    await Replayer(workflows=list(WORKFLOWS), data_converter=pydantic_data_converter).replay_workflow(history)


@contextlib.asynccontextmanager
async def worker_with(client: Client, settings: Settings) -> AsyncIterator[None]:
    """A worker built from `settings` as they are now: timeouts and queue waits are the workers' policy,
    read when a worker starts (the `worker` fixture starts before a test changes its settings)."""
    parts = build_worker(client, settings, settings.database_url or "")
    try:
        async with parts:
            yield
    finally:
        parts.close()


@pytest.mark.slow
async def test_passing_example_end_to_end(
    client: Client,
    settings: Settings,
    worker: None,
    example_sources: dict[str, Path],
    sessions: sessionmaker[Session],
) -> None:
    handle = await submit_upload(
        client, settings, settings.database_url or "", example_sources["hello-debflow"]
    )
    report = await handle.result()

    tasks = tasks_by_name(report)
    assert report.result == TaskResult.SUCCESS, report
    assert tasks["build"].result == TaskResult.SUCCESS
    assert tasks["lintian"].status == TaskStatus.COMPLETED
    assert tasks["autopkgtest"].result == TaskResult.SUCCESS
    with sessions() as session:
        produced = {
            a.id: a for a in session.scalars(select(Artifact).where(Artifact.workflow_id == handle.id))
        }
        categories = sorted(a.category for a in produced.values())
        debs = {a.data["package"]: a.data for a in produced.values() if a.category == "debian:binary-package"}
        tests = next(a for a in produced.values() if a.category == "debian:autopkgtest").data["tests"]
        history = session.scalars(select(TaskHistory).where(TaskHistory.workflow_id == handle.id)).all()
        relations = session.scalars(
            select(ArtifactRelation.type).where(ArtifactRelation.artifact_id.in_(produced))
        ).all()
    # arch-any and arch-all binaries from one build on the first architecture
    assert {"hello-debflow", "hello-debflow-doc"} <= set(debs)
    assert debs["hello-debflow"]["architecture"] == "amd64"
    assert debs["hello-debflow-doc"]["architecture"] == "all"
    assert categories.count("debian:package-build-log") == 1
    assert {"debian:upload", "debian:lintian", "debian:autopkgtest"} <= set(categories)
    assert {name: t["status"] for name, t in tests.items()} == {"greets": "PASS", "version-flag": "PASS"}
    assert sorted(h.task_name for h in history) == ["autopkgtest", "build", "lintian"]
    assert all(h.duration_s > 0 and h.cpu_user_s is not None for h in history)
    assert {"built-using", "extends", "relates-to"} <= set(relations)

    # The Web UI finds the run by package name.
    found = [
        w.id
        async for w in client.list_workflows('DebflowPackage="hello-debflow" AND DebflowResult="success"')
    ]
    assert handle.id in found
    await replay(client, handle.id, "upload-pipeline-v4-hello-debflow")


@pytest.mark.slow
async def test_failing_example_is_a_result_not_a_crash(
    client: Client,
    settings: Settings,
    worker: None,
    example_sources: dict[str, Path],
    sessions: sessionmaker[Session],
) -> None:
    handle = await submit_upload(
        client, settings, settings.database_url or "", example_sources["broken-debflow"]
    )
    report = await handle.result()

    tasks = tasks_by_name(report)
    assert report.result == TaskResult.FAILURE
    assert tasks["build"].result == TaskResult.SUCCESS
    assert tasks["lintian"].result == TaskResult.SUCCESS
    assert tasks["autopkgtest"].status == TaskStatus.COMPLETED
    assert tasks["autopkgtest"].result == TaskResult.FAILURE
    with sessions() as session:
        lintian = session.scalar(
            select(Artifact).where(Artifact.workflow_id == handle.id, Artifact.category == "debian:lintian")
        )
        autopkgtest = session.scalar(
            select(Artifact).where(
                Artifact.workflow_id == handle.id, Artifact.category == "debian:autopkgtest"
            )
        )
    assert lintian is not None and autopkgtest is not None
    assert lintian.data["counts"].get("warning", 0) >= 1
    assert any(t["tag"] == "no-manual-page" for t in lintian.data["tags"])
    assert autopkgtest.data["exit_code"] == 4
    assert {n: t["status"] for n, t in autopkgtest.data["tests"].items()} == {
        "runs": "PASS",
        "always-fails": "FAIL",
    }
    await replay(client, handle.id, "upload-pipeline-v4-broken-debflow")


async def test_architecture_without_workers_is_reported_and_dependents_skipped(
    client: Client,
    settings: Settings,
    example_sources: dict[str, Path],
) -> None:
    """No worker polls the arm64 build queue: after the queue wait, a clear error; the checks skipped."""
    settings.queue_wait_s = 3
    async with worker_with(client, settings):
        handle = await submit_upload(
            client,
            settings,
            settings.database_url or "",
            example_sources["hello-debflow"],
            architectures=["amd64", "arm64"],
            checks=[Check.BUILD],
        )
        report = await handle.result()
    arm64 = {t.name: t for t in report.tasks if t.architecture == "arm64"}
    assert arm64["build"].status == TaskStatus.ERROR
    assert arm64["build"].summary == (
        f"no worker took the build task from queue {settings.task_queue}-build-arm64 within 3 s: "
        "start one with `debflow worker --capabilities build:arm64`"
    )
    assert arm64["lintian"].status == TaskStatus.SKIPPED
    assert arm64["autopkgtest"].summary == "build errored"
    amd64 = {t.name: t for t in report.tasks if t.architecture == "amd64"}
    assert amd64["build"].result == TaskResult.SUCCESS
    assert amd64["lintian"].summary == "not requested"
    assert report.result == TaskResult.ERROR


async def test_recorded_histories_replay() -> None:
    """Histories recorded from earlier versions of the workflow must still replay (determinism)."""
    files = sorted(HISTORIES.glob("*.json"))
    assert files, "no recorded histories: run the tests with DEBFLOW_RECORD_HISTORIES=1"
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=pydantic_data_converter)
    for path in files:
        workflow_id = path.stem.split("--", 1)[1]
        history = WorkflowHistory.from_json(workflow_id, json.loads(path.read_text()))
        await replayer.replay_workflow(history)
