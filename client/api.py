"""The Python API: submit an upload, follow it, fetch its report."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from pathlib import Path
from typing import Any

from temporalio.api.history.v1 import WorkflowExecutionStartedEventAttributes
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
)
from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities.debian.dsc import BadUpload
from activities.services.uploads import UploadLimits, check_upload, store_upload
from activities.storage.store import ArtifactStore
from models import identifiers
from models.architectures import builds_on
from models.payloads import (
    DEFAULT_CHECKS,
    Check,
    PipelineProgress,
    TaskResult,
    UploadPipelineInput,
    UploadReport,
)
from worker.context import artifact_store
from worker.settings import Settings
from workflows import search_attributes as sa
from workflows.upload_pipeline import UploadPipelineWorkflow


def workflow_url(ui_url: str | None, namespace: str, workflow_id: str) -> str | None:
    if not ui_url:
        return None
    return f"{ui_url}/namespaces/{namespace}/workflows/{workflow_id}"


def check_target(settings: Settings, suite: str, architectures: list[str]) -> None:
    """Unknown suites and architectures are bad input, refused before anything is stored."""
    if suite not in settings.suites:
        raise BadUpload(f"unknown suite {suite!r} (known: {', '.join(settings.suites)})")
    if not architectures:
        raise BadUpload("no architecture requested")
    for arch in architectures:
        if arch not in settings.architectures:
            raise BadUpload(f"unknown architecture {arch!r}")
    if len(set(architectures)) != len(architectures):
        raise BadUpload("an architecture is requested twice")


def check_buildable(dsc: str, field: list[str], architectures: list[str]) -> None:
    """Refuse an upload that would build nothing for the requested architectures (its run would test
    nothing): arch-specific packages where dpkg's wildcards match, arch:all ones with the first. The
    rule is the one the run's `describe_upload` applies (models/architectures.py)."""
    buildable = any(builds_on(field, arch, arch_all=index == 0) for index, arch in enumerate(architectures))
    if not buildable:
        raise BadUpload(
            f"{dsc} builds nothing for {' '.join(architectures)} (Architecture: {' '.join(field)})"
        )


def upload_limits(settings: Settings) -> UploadLimits:
    return UploadLimits(
        max_bytes=settings.max_upload_bytes,
        max_unpacked_bytes=settings.max_unpacked_bytes,
        max_metadata_bytes=settings.max_metadata_bytes,
        max_archive_members=settings.max_archive_members,
        extract_in=settings.scratch_dir,
    )


def store_source_package(
    settings: Settings,
    database_url: str,
    dsc: Path,
    architectures: list[str] | None = None,
    *,
    store: ArtifactStore | None = None,
) -> tuple[int, str, str]:
    """Check `dsc` and its files (and, given `architectures`, that it builds something for them), then
    store them as one debian:source-package artifact (in `store`, else over a short-lived engine).
    The same upload stored twice, even concurrently, is one artifact."""
    checked = check_upload(dsc, upload_limits(settings))
    if architectures is not None:
        check_buildable(dsc.name, checked.data.architecture, architectures)
    with contextlib.ExitStack() as stack:
        if store is None:
            store = stack.enter_context(artifact_store(settings, database_url))
        artifact_id = store_upload(store, dsc, checked, expiration_days=settings.artifact_expiration_days)
    return artifact_id, checked.data.name, checked.data.version


class AlreadySubmitted(RuntimeError):
    """The same upload, suite, architectures and checks already have an open run."""


def upload_workflow_id(
    source: str, version: str, artifact_id: int, params: UploadPipelineInput, again: str | None = None
) -> str:
    """Deterministic: a duplicate submission of an open run is refused by Temporal, not run twice."""
    what = f"{artifact_id}/{params.suite}/{','.join(params.architectures)}/{','.join(params.tasks)}"
    return identifiers.upload_run_id(source, version, hashlib.sha256(what.encode()).hexdigest()[:8], again)


async def submit_upload(
    client: Client,
    settings: Settings,
    database_url: str,
    dsc: Path,
    *,
    suite: str = "bookworm",
    architectures: list[str] | None = None,
    checks: list[Check] | None = None,
    task_queue: str | None = None,
    again: bool = False,
    store: ArtifactStore | None = None,
) -> WorkflowHandle[UploadPipelineWorkflow, UploadReport]:
    """Store the upload and start its pipeline; returns the workflow handle.

    An open run of the same upload, suite, architectures and checks makes this raise AlreadySubmitted,
    unless `again` asks for another run.
    """
    architectures = architectures or ["amd64"]
    check_target(settings, suite, architectures)
    artifact_id, source, version = store_source_package(
        settings, database_url, dsc, architectures, store=store
    )
    # Timeouts are the workers' policy (estimate_timeouts hands it to the run): none sent from here.
    params = UploadPipelineInput(
        source_artifact_id=artifact_id,
        suite=suite,
        architectures=architectures,
        tasks=checks or list(DEFAULT_CHECKS),
    )
    workflow_id = upload_workflow_id(
        source, version, artifact_id, params, uuid.uuid4().hex[:6] if again else None
    )
    try:
        return await _start(client, settings, params, workflow_id, source, version, task_queue)
    except WorkflowAlreadyStartedError:
        raise AlreadySubmitted(
            f"{source} {version} is already being tested for {suite} ({' '.join(architectures)}) "
            f"in run {workflow_id}; `debflow retry {workflow_id}` re-runs its failed tasks, "
            "`--again` starts another run"
        ) from None


async def _start(
    client: Client,
    settings: Settings,
    params: UploadPipelineInput,
    workflow_id: str,
    source: str,
    version: str,
    task_queue: str | None,
    *,
    priority_key: int | None = None,
) -> WorkflowHandle[UploadPipelineWorkflow, UploadReport]:
    suite, architectures = params.suite, params.architectures
    return await client.start_workflow(
        UploadPipelineWorkflow.run,
        params,
        id=workflow_id,
        task_queue=task_queue or settings.task_queue,
        # Uploads overtake campaigns (docs/operations.md, priority); one fairness key per source.
        priority=Priority(
            priority_key=priority_key or settings.upload_priority,
            fairness_key=identifiers.upload_fairness_key(source),
        ),
        # A retry is a new run of the same workflow id; the memo names the run it retries (Web UI).
        memo={"retry_of": params.retry_of} if params.retry_of else None,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.PACKAGE, source),
                SearchAttributePair(sa.VERSION, version),
                SearchAttributePair(sa.SUITE, suite),
                SearchAttributePair(sa.KIND, "upload"),
                SearchAttributePair(sa.ARCHITECTURES, architectures),
                SearchAttributePair(sa.RESULT, "pending"),
            ]
        ),
        static_summary=f"upload {source} {version} to {suite} ({' '.join(architectures)})",
    )


async def get_report(client: Client, workflow_id: str, *, poll_s: float = 1.0) -> UploadReport:
    """The report once every task of the run has finished (the run may stay open for retries)."""
    handle = client.get_workflow_handle_for(UploadPipelineWorkflow.run, workflow_id)
    while True:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            return await handle.result()
        try:
            progress = await handle.query(UploadPipelineWorkflow.progress)
            if progress.finished:
                return await handle.query(UploadPipelineWorkflow.report)
        except RPCError:
            pass  # no worker has picked the run up yet
        await asyncio.sleep(poll_s)


class RetryRefused(RuntimeError):
    """A run that cannot be retried: still running, cancelled, or nothing failed."""


async def retry_failed(
    client: Client, settings: Settings, workflow_id: str
) -> WorkflowUpdateHandle[UploadReport] | WorkflowHandle[UploadPipelineWorkflow, UploadReport]:
    """Re-run the failed and errored tasks of a finished run (and what depends on them); returns a
    handle whose `result()` is the new report, once the retry has started.

    A finished run has ended: the retry is a new run of the same workflow id, given the previous run's
    input and report, that reuses every task that succeeded. A run still open is either running its
    tasks or one started before runs ended with their tasks, in its retry window: the `retry_failed`
    update answers for it.
    """
    handle = client.get_workflow_handle_for(UploadPipelineWorkflow.run, workflow_id)
    described = await handle.describe()
    if described.status == WorkflowExecutionStatus.RUNNING:
        return await handle.start_update(
            UploadPipelineWorkflow.retry_failed, wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
    if described.status != WorkflowExecutionStatus.COMPLETED:
        status = described.status.name.lower() if described.status else "ended"
        raise RetryRefused(f"{workflow_id} did not complete ({status}): submit the upload again")
    previous = await handle.result()
    if not any(t.result in (TaskResult.FAILURE, TaskResult.ERROR) for t in previous.tasks):
        raise RetryRefused(f"{workflow_id}: no task failed or errored: there is nothing to retry")
    started = await _started_event(handle)
    (first_input,) = await client.data_converter.decode(started.input.payloads, [UploadPipelineInput])
    params = first_input.model_copy(update={"retry_of": described.run_id, "previous": previous})
    try:
        return await _start(
            client,
            settings,
            params,
            workflow_id,
            previous.source,
            previous.version,
            started.task_queue.name,
            priority_key=started.priority.priority_key or None,
        )
    except WorkflowAlreadyStartedError:
        raise RetryRefused(f"{workflow_id} is already being retried") from None


async def _started_event(handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionStartedEventAttributes:
    async for event in handle.fetch_history_events():
        return event.workflow_execution_started_event_attributes
    raise RetryRefused(f"{handle.id} has no history")


async def close_run(client: Client, workflow_id: str) -> bool:
    """End the retry window of a run that keeps one (runs started before runs ended with their tasks)
    now: it returns its report. False when the run has already ended."""
    handle = client.get_workflow_handle_for(UploadPipelineWorkflow.run, workflow_id)
    if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
        return False
    await handle.signal(UploadPipelineWorkflow.close)
    return True


async def get_progress(client: Client, workflow_id: str) -> PipelineProgress:
    handle = client.get_workflow_handle_for(UploadPipelineWorkflow.run, workflow_id)
    return await handle.query(UploadPipelineWorkflow.progress)
